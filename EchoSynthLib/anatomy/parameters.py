"""Anatomical parameters of the phantom heart and the adult ranges they are drawn from.

Lengths are millimetres, angles degrees. Ranges follow adult apical echo (ASE chamber quantification
ranges, widened a little to cover mild disease): LV end-diastolic length 70-95 mm and width 38-56 mm,
wall 7-11 mm, fractional shortening 20-40 %, left atrium 35-55 mm long and larger at end-systole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

from EchoSynthLib.errors import InputError

VIEWS = ("4CH", "2CH", "3D")
PHASES = ("ED", "ES")


@dataclass(frozen=True)
class HeartParameters:
    """One heart at end-diastole, with the factors that turn it into its end-systolic shape."""

    apex_depth_mm: float  # depth of the endocardial apex below the probe
    apex_offset_mm: float  # lateral offset of the apex from the sector's centre line
    tilt_deg: float  # azimuthal angle of the long axis (positive: base towards +i)
    elevation_tilt_deg: float  # elevational angle of the long axis (3D only)
    lv_length_mm: float  # endocardial apex to mitral plane
    lv_width_mm: float  # largest cavity diameter
    lv_ellipticity: float  # elevational / azimuthal cavity diameter (3D only)
    widest_at: float  # where the cavity is widest, as a fraction of its length from the apex
    annulus_width_mm: float  # cavity width at the mitral plane
    curvature_mm: float  # sideways bow of the long axis at mid-cavity
    wall_mm: float  # myocardial wall thickness
    la_length_mm: float  # left atrium along the long axis
    la_width_mm: float  # left atrium across
    long_axis_shortening: float  # (L_ED - L_ES) / L_ED
    fractional_shortening: float  # (W_ED - W_ES) / W_ED
    wall_thickening: float  # (wall_ES - wall_ED) / wall_ED
    la_growth: float  # (LA_ES - LA_ED) / LA_ED, lengths

    def at_phase(self, phase: str) -> HeartParameters:
        """The heart at 'ED' (as stored) or 'ES' (shortened, thicker walls, larger atrium)."""
        phase = phase.upper()
        if phase not in PHASES:
            raise InputError(f"unknown cardiac phase '{phase}' (use ED or ES)")
        if phase == "ED":
            return self
        return replace(
            self,
            lv_length_mm=self.lv_length_mm * (1 - self.long_axis_shortening),
            lv_width_mm=self.lv_width_mm * (1 - self.fractional_shortening),
            annulus_width_mm=self.annulus_width_mm * (1 - 0.3 * self.fractional_shortening),
            wall_mm=self.wall_mm * (1 + self.wall_thickening),
            la_length_mm=self.la_length_mm * (1 + self.la_growth),
            la_width_mm=self.la_width_mm * (1 + 0.7 * self.la_growth),
        )

    def as_dict(self) -> dict[str, float]:
        """Plain dictionary, for manifests and sidecar files."""
        return asdict(self)


_COMMON: dict[str, tuple[float, float]] = {
    "apex_depth_mm": (18.0, 32.0),
    "apex_offset_mm": (-6.0, 6.0),
    "elevation_tilt_deg": (0.0, 0.0),
    "lv_length_mm": (72.0, 92.0),
    "lv_width_mm": (38.0, 54.0),
    "lv_ellipticity": (1.0, 1.0),
    "widest_at": (0.55, 0.68),
    "annulus_width_mm": (22.0, 30.0),
    "curvature_mm": (-3.0, 3.0),
    "wall_mm": (7.0, 11.0),
    "la_length_mm": (35.0, 50.0),
    "la_width_mm": (32.0, 44.0),
    "long_axis_shortening": (0.08, 0.16),
    "fractional_shortening": (0.22, 0.38),
    "wall_thickening": (0.25, 0.55),
    "la_growth": (0.10, 0.25),
}
RANGES: dict[str, dict[str, tuple[float, float]]] = {
    # In the apical four-chamber view the LV axis leans with its base to the right of the image.
    "4CH": {**_COMMON, "tilt_deg": (0.0, 14.0)},
    "2CH": {**_COMMON, "tilt_deg": (-7.0, 7.0), "la_length_mm": (38.0, 54.0)},
    "3D": {
        **_COMMON,
        "tilt_deg": (-6.0, 6.0),
        "elevation_tilt_deg": (-6.0, 6.0),
        "lv_ellipticity": (0.85, 1.1),
    },
}
PARAMETER_NAMES = tuple(f.name for f in fields(HeartParameters))


def sample_heart(view: str, rng: np.random.Generator, **fixed: float) -> HeartParameters:
    """Draw a heart for ``view`` from the adult ranges; keyword arguments fix chosen parameters."""
    view = view.upper()
    if view not in RANGES:
        raise InputError(f"unknown view '{view}' (use one of {', '.join(VIEWS)})")
    unknown = sorted(set(fixed) - set(PARAMETER_NAMES))
    if unknown:
        raise InputError(f"unknown anatomy parameter(s) {unknown} (known: {', '.join(PARAMETER_NAMES)})")
    values = {name: float(rng.uniform(*RANGES[view][name])) for name in PARAMETER_NAMES}
    values.update({name: float(value) for name, value in fixed.items()})
    _check(values)
    return HeartParameters(**values)


def _check(values: dict[str, float]) -> None:
    positive = ("lv_length_mm", "lv_width_mm", "annulus_width_mm", "wall_mm", "la_length_mm", "la_width_mm")
    for name in positive:
        if not np.isfinite(values[name]) or values[name] <= 0:
            raise InputError(f"anatomy parameter {name} must be a positive number, got {values[name]}")
    if not 0.2 <= values["widest_at"] <= 0.9:
        raise InputError(f"widest_at must lie in [0.2, 0.9], got {values['widest_at']}")
    if values["annulus_width_mm"] > values["lv_width_mm"]:
        raise InputError("annulus_width_mm cannot exceed lv_width_mm")
    for name in ("long_axis_shortening", "fractional_shortening"):
        if not 0 <= values[name] < 0.8:
            raise InputError(f"{name} must lie in [0, 0.8), got {values[name]}")
