"""Label-map augmentation with the Echo-from-noise settings (REFERENCE.md, "Echo from noise").

One random affine (rotation, translation, scale, shear) combined with a smooth elastic field, applied
in a single nearest-neighbour resampling by MONAI (``Rand2DElastic`` / ``Rand3DElastic``), then clipped
to the original ultrasound sector. Everything is in voxels: anisotropic spacing is ignored, as in the
reference (which works on 256x256 pixel maps).

``zoom`` and ``opening`` (off by default; ``VARIED_ACQUISITION`` turns them on) then show the new anatomy as
another acquisition would: another imaging depth and sector width (``acquisition.acquire``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import Rand2DElastic, Rand3DElastic

from EchoSynthLib.augmentation.acquisition import (
    VARIED_OPENING,
    VARIED_ZOOM,
    acquire,
    random_acquisition,
    sector_of,
)
from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import HEART, Structure, require_heart
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

REFERENCE_SIZE_PX = 256  # the displacement setting is given for 256-pixel maps
MAX_ATTEMPTS = 10
FIELD_STD_PER_MAX = 0.5 / math.sqrt(3.0)  # see _transform
_CANONICAL = tuple(s.label for s in Structure)
ACQUISITION_STREAM = 1  # a new anatomy's acquisition is drawn apart from its warp (same seed)


@dataclass(frozen=True)
class LabelMapAugmentation:
    """Random affine + elastic settings; ``scale`` is the object's scale (0.8 shrinks the heart)."""

    rotate_deg: float = 5.0
    translate_fraction: float = 0.05
    scale: tuple[float, float] = (0.8, 1.05)
    shear_deg: float = 5.0
    control_points: int = 10
    max_displacement_px: float = 30.0
    prob: float = 1.0
    zoom: tuple[float, float] = (1.0, 1.0)  # the acquisition's zoom range (acquisition.Acquisition)
    opening: tuple[float, float] = (1.0, 1.0)  # its sector opening range, as a fraction of the map's

    @property
    def varies_acquisition(self) -> bool:
        """True when a new anatomy is also shown in an acquisition of its own."""
        return self.zoom != (1.0, 1.0) or self.opening != (1.0, 1.0)

    def __post_init__(self) -> None:
        low, high = self.scale
        if not 0 < low <= high:
            raise InputError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.control_points < 4:
            raise InputError(f"control_points must be at least 4 (cubic B-spline), got {self.control_points}")
        if not 0 <= self.prob <= 1:
            raise InputError(f"prob must be in [0, 1], got {self.prob}")
        for name in ("rotate_deg", "translate_fraction", "shear_deg", "max_displacement_px"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be a non-negative number, got {getattr(self, name)}")
        for name in ("zoom", "opening"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise InputError(f"{name} must be (low, high) with 0 < low <= high, got {(low, high)}")


# The Echo-from-noise warp, each new anatomy also in an acquisition of its own (``--acquisition varied``).
VARIED_ACQUISITION = LabelMapAugmentation(zoom=VARIED_ZOOM, opening=VARIED_OPENING)
# ``--acquisition``'s choices (``inference.options.ACQUISITIONS``, torch-free, holds the same names).
ACQUISITIONS = {"same": LabelMapAugmentation(), "varied": VARIED_ACQUISITION}


def _affine_ranges(spatial_shape: tuple[int, ...], settings: LabelMapAugmentation) -> dict:
    dims = len(spatial_shape)
    rotate = math.radians(settings.rotate_deg)
    shear = math.tan(math.radians(settings.shear_deg))
    # MONAI's affine maps output to input (sampling-grid) coordinates, so its scale acts inversely on
    # the object: an object scale s needs a grid scale 1/s. MONAI adds 1 to the range and draws each
    # axis independently.
    low, high = settings.scale
    grid_scale = (1.0 / high - 1.0, 1.0 / low - 1.0)
    return {
        "rotate_range": (rotate,) if dims == 2 else (rotate,) * 3,  # in-plane; about all three axes in 3D
        "shear_range": (shear,) * (2 if dims == 2 else 6),  # shear coefficients = tan(shear angle)
        "translate_range": tuple(settings.translate_fraction * n for n in spatial_shape),  # in voxels
        "scale_range": (grid_scale,) * dims,
        "prob": settings.prob,
        "mode": "nearest",
        "padding_mode": "zeros",
    }


def _transform(
    spatial_shape: tuple[int, ...], settings: LabelMapAugmentation
) -> Rand2DElastic | Rand3DElastic:
    """A fresh MONAI transform (own random state) for a channel-first map of this spatial shape."""
    # The reference draws its warp with torchio's RandomElasticDeformation: a cubic B-spline whose
    # ``control_points`` per axis include 3 for the spline order (so size / (n - 3) between knots), with
    # knot displacements uniform in +-max (std max / sqrt(3)); the B-spline averages neighbouring knots,
    # which in 2D halves that std. MONAI interpolates its control grid instead, so we give it the same
    # knot spacing and the *resulting* field std, 0.29 * max (scaled with the map's size). A stronger
    # field (3 sigma = max, knots size / n apart) tore thin myocardium apart on CAMUS maps.
    # Integer control spacing: a fractional one makes MONAI's upsampled grid shift by up to half a pixel.
    spacing = tuple(max(1, round(n / max(1, settings.control_points - 3))) for n in spatial_shape)
    sigma_px = (
        FIELD_STD_PER_MAX * settings.max_displacement_px * float(np.mean(spatial_shape)) / REFERENCE_SIZE_PX
    )
    affine = _affine_ranges(spatial_shape, settings)
    if len(spatial_shape) == 2:
        return Rand2DElastic(spacing=spacing, magnitude_range=(sigma_px, sigma_px), **affine)
    # 3D: MONAI smooths per-voxel U(-1, 1) noise (std 1/sqrt(3)) with a normalised Gaussian of width
    # sigma; smoothed white noise of unit std has std (8 pi^1.5 sigma^3)^-1/2 (sum of the squared kernel;
    # checked numerically to ~3%). Scale it so the field's std equals the 2D control-point std.
    sigma = float(np.mean(spacing)) / 2.0
    magnitude = sigma_px * math.sqrt(3.0) * math.sqrt(8.0 * math.pi**1.5 * sigma**3)
    return Rand3DElastic(sigma_range=(sigma, sigma), magnitude_range=(magnitude, magnitude), **affine)


def _warp(array: np.ndarray, seed: int, settings: LabelMapAugmentation) -> np.ndarray:
    """Resample a (k, j, i) canonical map once; single-slice maps are warped in 2D."""
    two_d = array.shape[0] == 1
    channel_first = array[0][np.newaxis] if two_d else array[np.newaxis]
    transform = _transform(channel_first.shape[1:], settings)
    transform.set_random_state(seed=seed)
    warped = transform(torch.from_numpy(channel_first.astype(np.float32)))
    out = np.rint(np.asarray(torch.as_tensor(warped).detach().cpu())).astype(np.uint8)
    return out.reshape(array.shape)


def _clip_to_sector(warped: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Background outside the original sector; warped-in background inside it becomes SECTOR."""
    sector_value = Structure.SECTOR.label
    if not np.any(original == sector_value):
        return warped  # no sector class: the field of view is the sector
    sector = original != 0
    out = np.where(sector, warped, 0).astype(np.uint8)
    out[sector & (out == 0)] = sector_value
    return out


def _retry_seed(seed: int, attempt: int) -> int:
    if attempt == 0:
        return seed
    return int(np.random.SeedSequence(seed, spawn_key=(attempt,)).generate_state(1)[0])


def augment_label_map(
    labels: Volume, seed: int, settings: LabelMapAugmentation = LabelMapAugmentation()
) -> Volume:
    """A randomly deformed copy of a canonical label map (same geometry, uint8), clipped to its sector.

    The same seed gives the same map. If a heart structure vanishes, the warp is redrawn with seeds
    derived from ``seed`` (up to 10 tries) before an InputError.
    """
    seed = check_seed(seed)
    values = require_heart(labels.array)
    heart = {s.label for s in HEART} & {int(v) for v in values}
    original = labels.array.astype(np.uint8)
    sector = None
    if settings.varies_acquisition:
        try:
            sector = sector_of(labels)
        except InputError as error:
            raise InputError(f"another acquisition needs the map's sector: {error}") from None
    for attempt in range(MAX_ATTEMPTS):
        attempt_seed = _retry_seed(seed, attempt)
        out = labels.with_array(_clip_to_sector(_warp(original, attempt_seed, settings), original))
        if sector is not None:
            draw = np.random.default_rng([attempt_seed, ACQUISITION_STREAM])
            out = acquire(out, random_acquisition(draw, settings.zoom, settings.opening), sector, labels=True)
        if heart <= set(np.unique(out.array).tolist()):
            return out
    raise InputError(
        f"a heart structure vanished in {MAX_ATTEMPTS} augmentation attempts (seed {seed}); "
        "is it too small or at the edge of the sector?"
    )


def variant_seed(seed: int, index: int) -> int:
    """The seed of variant ``index`` of ``augment_many(..., seed)``."""
    return int(np.random.SeedSequence([check_seed(seed), index]).generate_state(1)[0])


def augment_many(
    labels: Volume, n: int, seed: int, settings: LabelMapAugmentation = LabelMapAugmentation()
) -> list[Volume]:
    """``n`` augmented variants, variant ``i`` seeded by ``variant_seed(seed, i)``."""
    if n < 1:
        raise InputError(f"the number of variants must be at least 1, got {n}")
    return [augment_label_map(labels, variant_seed(seed, index), settings) for index in range(n)]
