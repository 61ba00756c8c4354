"""Render phantom label maps: LV cavity, myocardium and left atrium inside an ultrasound sector.

One heart model serves every view: the LV cavity is a tapered, truncated ellipsoid of revolution
(elliptical towards the apex, narrowing to the mitral annulus at the base), the myocardium is the shell
within ``wall_mm`` of the cavity up to the mitral plane (open at the base), and the left atrium is an
ellipsoid below the mitral plane. A 2D apical view is the plane through the long axis; a 3D volume
evaluates the same model on a grid (the atrium is left out in 3D, as in MITEA-style LV labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from EchoSynthLib.anatomy.parameters import PHASES, HeartParameters, sample_heart
from EchoSynthLib.checks import check_memory, check_number, check_seed
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.sector import SectorGeometry
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

MAX_DRAWS = 200

# Peak memory of rendering a phantom (measured: about 90 bytes per voxel in 2D and 3D).
PHANTOM_BYTES_PER_VOXEL = 100


@dataclass(frozen=True)
class PhantomGrid:
    """Image grid and probe: size (cols, rows[, slices]), sector depth and opening angles in degrees."""

    size: tuple[int, ...] = (256, 256)
    depth_mm: float = 150.0
    angle_deg: float = 75.0
    elevation_angle_deg: float = 70.0

    @classmethod
    def for_view(cls, view: str, size: int | None = None, **overrides: float) -> PhantomGrid:
        """Default grid for a view: 256x256 for 2D, 128^3 for 3D (``size`` sets every side)."""
        dims = 3 if view.upper() == "3D" else 2
        side = size if size is not None else (128 if dims == 3 else 256)
        if dims == 3:
            return cls(
                size=(side,) * 3,
                depth_mm=overrides.get("depth_mm", 140.0),
                angle_deg=overrides.get("angle_deg", 70.0),
                elevation_angle_deg=overrides.get("elevation_angle_deg", 70.0),
            )
        return cls(
            size=(side, side),
            depth_mm=overrides.get("depth_mm", 150.0),
            angle_deg=overrides.get("angle_deg", 75.0),
        )

    def volume_and_sector(self) -> tuple[Volume, SectorGeometry]:
        """An empty label volume with isotropic spacing fitting the sector, apex at (0, 0, 0) mm."""
        if len(self.size) not in (2, 3) or min(self.size) < 8:
            raise InputError(f"phantom grid size must be 2 or 3 numbers of at least 8, got {self.size}")
        check_memory(PHANTOM_BYTES_PER_VOXEL * math.prod(self.size), f"a phantom of {self.size} voxels")
        for name in ("angle_deg", "elevation_angle_deg", "depth_mm"):
            check_number(getattr(self, name), f"phantom {name}")
        if not 10.0 <= self.angle_deg <= 120.0 or not 10.0 <= self.elevation_angle_deg <= 120.0:
            raise InputError("sector angles must lie between 10 and 120 degrees")
        if not 20.0 <= self.depth_mm <= 400.0:
            raise InputError(f"sector depth must lie between 20 and 400 mm, got {self.depth_mm}")
        cols, rows = self.size[0], self.size[1]
        slices = self.size[2] if len(self.size) == 3 else 1
        half = math.radians(self.angle_deg / 2)
        extents = [self.depth_mm / (rows - 1), 2 * self.depth_mm * math.sin(half) / (cols - 1)]
        if slices > 1:
            extents.append(
                2 * self.depth_mm * math.sin(math.radians(self.elevation_angle_deg / 2)) / (slices - 1)
            )
        spacing = max(extents)
        origin = (-(cols - 1) / 2 * spacing, 0.0, -(slices - 1) / 2 * spacing if slices > 1 else 0.0)
        volume = Volume(np.zeros((slices, rows, cols), np.uint8), (spacing,) * 3, origin)
        sector = SectorGeometry.centred(
            volume, self.depth_mm, self.angle_deg, self.elevation_angle_deg if slices > 1 else 0.0
        )
        return volume, sector


@dataclass(frozen=True)
class Phantom:
    """A phantom label map with the heart and probe that made it."""

    labels: Volume
    heart: HeartParameters
    sector: SectorGeometry
    view: str
    phase: str


def phantom_label_map(
    view: str = "4CH",
    phase: str = "ED",
    seed: int = 0,
    grid: PhantomGrid | None = None,
    **fixed: float,
) -> Phantom:
    """A seeded phantom of ``view`` ('4CH', '2CH' or '3D') at ``phase`` ('ED' or 'ES').

    The same seed gives the same heart at both phases. Keyword arguments fix anatomy parameters
    (see ``HeartParameters``); the others are drawn until the whole heart fits in the sector at both
    phases.
    """
    view, phase = view.upper(), phase.upper()
    if phase not in PHASES:
        raise InputError(f"unknown cardiac phase '{phase}' (use ED or ES)")
    grid = grid or PhantomGrid.for_view(view)
    if (len(grid.size) == 3) != (view == "3D"):
        raise InputError(f"view {view} needs a {'3D' if view == '3D' else '2D'} grid, got size {grid.size}")
    seed = check_seed(seed)
    empty, sector = grid.volume_and_sector()
    rng = np.random.default_rng(seed)
    for _ in range(MAX_DRAWS):
        heart = sample_heart(view, rng, **fixed)
        both = {
            p: render_heart(heart.at_phase(p), empty, sector, with_atrium=view != "3D") for p in ("ED", "ES")
        }
        if all(fits for _, fits in both.values()):
            return Phantom(both[phase][0], heart, sector, view, phase)
    raise InputError(
        f"no {view} heart with the fixed parameters {fixed or '{}'} fits in a {grid.depth_mm:g} mm, "
        f"{grid.angle_deg:g} degree sector; make the sector deeper or wider, or the heart smaller"
    )


def render_heart(
    heart: HeartParameters, grid: Volume, sector: SectorGeometry, with_atrium: bool = True
) -> tuple[Volume, bool]:
    """Canonical label map of ``heart`` on ``grid`` and whether the heart fits inside the sector."""
    u, v, w = _long_axis_coordinates(heart, grid, sector)
    length = heart.lv_length_mm
    bow = heart.curvature_mm * np.sin(np.pi * np.clip(u / length, 0.0, 1.0))
    radial = np.sqrt((v - bow) ** 2 + (w / heart.lv_ellipticity) ** 2)
    cavity = (u >= 0) & (u <= length) & (radial <= _cavity_half_width(u, heart))
    if not cavity.any():
        return grid.with_array(np.zeros(grid.array.shape, np.uint8)), False
    myocardium = _shell(cavity, heart.wall_mm, grid.spacing[::-1]) & (u <= length)
    atrium = _atrium(heart, u, v, w) & ~myocardium & ~cavity if with_atrium else np.zeros_like(cavity)

    inside = sector.mask(grid)
    labels = np.where(inside, Structure.SECTOR.label, Structure.BACKGROUND.label).astype(np.uint8)
    labels[atrium & inside] = Structure.LEFT_ATRIUM.label
    labels[myocardium & inside] = Structure.LV_MYOCARDIUM.label
    labels[cavity & inside] = Structure.LV_CAVITY.label

    ventricle = cavity | myocardium
    fits = (
        not (ventricle & ~inside).any()
        and not _touches_border(ventricle)
        and (not with_atrium or (atrium & inside).sum() >= 0.8 * max(atrium.sum(), 1))
        and (not with_atrium or atrium.any())
    )
    return grid.with_array(labels), bool(fits)


def _shell(mask: np.ndarray, thickness_mm: float, spacing_kji: tuple[float, ...]) -> np.ndarray:
    """Voxels outside ``mask`` within ``thickness_mm`` of it (distance transform on its bounding box)."""
    margin = [math.ceil(thickness_mm / s) + 1 for s in spacing_kji]
    box = tuple(
        slice(max(int(idx.min()) - m, 0), int(idx.max()) + m + 1)
        for idx, m in zip(np.nonzero(mask), margin, strict=True)
    )
    shell = np.zeros_like(mask)
    distance = ndimage.distance_transform_edt(~mask[box], sampling=spacing_kji)
    shell[box] = (distance <= thickness_mm) & ~mask[box]
    return shell


def _long_axis_coordinates(heart: HeartParameters, grid: Volume, sector: SectorGeometry):
    """Voxel positions in the LV frame: u along the long axis from the apex, v and w across it (mm)."""
    sx, sy, sz = grid.spacing
    k_size, j_size, i_size = grid.array.shape
    x = (np.arange(i_size) - sector.apex_index[0]) * sx - heart.apex_offset_mm
    y = (np.arange(j_size) - sector.apex_index[1]) * sy - heart.apex_depth_mm
    z = (np.arange(k_size) - sector.apex_index[2]) * sz
    zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
    axis = np.array(
        [math.tan(math.radians(heart.tilt_deg)), 1.0, math.tan(math.radians(heart.elevation_tilt_deg))]
    )
    axis /= np.linalg.norm(axis)
    across = np.array([1.0, 0.0, 0.0]) - axis[0] * axis
    across /= np.linalg.norm(across)
    elevation = np.cross(axis, across)
    u = xx * axis[0] + yy * axis[1] + zz * axis[2]
    v = xx * across[0] + yy * across[1] + zz * across[2]
    w = xx * elevation[0] + yy * elevation[1] + zz * elevation[2]
    return u, v, w


def _cavity_half_width(u: np.ndarray, heart: HeartParameters) -> np.ndarray:
    """Cavity radius along the axis: an ellipse from the apex to the widest point, then a smooth
    narrowing to the annulus at the mitral plane."""
    length, half_width = heart.lv_length_mm, heart.lv_width_mm / 2
    widest = heart.widest_at * length
    annulus = heart.annulus_width_mm / 2
    apical = half_width * np.sqrt(np.clip(1 - ((widest - u) / widest) ** 2, 0.0, 1.0))
    t = np.clip((u - widest) / (length - widest), 0.0, 1.0)
    basal = annulus + (half_width - annulus) * np.cos(0.5 * np.pi * t) ** 2
    return np.where(u <= widest, apical, basal)


def _atrium(heart: HeartParameters, u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Ellipsoid below the mitral plane, placed so its cross-section there covers the annulus and the
    base of the walls (the atrium meets the ventricle along the whole mitral plane)."""
    semi_long, semi_across = heart.la_length_mm / 2, heart.la_width_mm / 2
    opening = min(0.98 * semi_across, heart.annulus_width_mm / 2 + heart.wall_mm / 2)
    centre_below_plane = semi_long * math.sqrt(1 - (opening / semi_across) ** 2)
    du = u - (heart.lv_length_mm + centre_below_plane)
    inside = (du / semi_long) ** 2 + (v / semi_across) ** 2 + (w / semi_across) ** 2 <= 1
    return inside & (u >= heart.lv_length_mm)


def _touches_border(mask: np.ndarray) -> bool:
    """True if the mask reaches the edge of the in-plane grid (or of the slab in 3D)."""
    edges = [mask[:, 0, :], mask[:, -1, :], mask[:, :, 0], mask[:, :, -1]]
    if mask.shape[0] > 1:
        edges += [mask[0], mask[-1]]
    return any(edge.any() for edge in edges)
