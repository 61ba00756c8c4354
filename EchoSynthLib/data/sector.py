"""Ultrasound sector geometry: where the probe sits and which voxels its beams reach.

A probe sits at an apex and fires beams into +j (depth, down the rows). A beam's direction has azimuth
``theta = atan(x / y)`` in the (i, j) plane and, in 3D, elevation ``phi = atan(z / y)`` in the (k, j)
plane (a pyramidal scan). Positions are in millimetres relative to the apex along the volume's index
axes, so the geometry follows the array whatever its LPS orientation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

MIN_SIDE = 8  # voxels along each axis of a map that a sector can be drawn in
# The narrowest opening a fitted sector may have. Echo sectors open by 60 to 90 degrees (every CAMUS map
# fits between 40 and 75); edges closer to parallel put the apex metres above the map, and the simulator
# then fires beams metres long (overflowing its gain and its memory) instead of refusing the map.
MIN_OPENING_DEG = 10.0


@dataclass(frozen=True)
class SectorGeometry:
    """Apex (fractional voxel index i, j, k), depth in mm, azimuth and elevation ranges in degrees."""

    apex_index: tuple[float, float, float]
    depth_mm: float
    azimuth_deg: tuple[float, float]
    elevation_deg: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if not self.depth_mm > 0:
            raise InputError(f"sector depth must be positive, got {self.depth_mm} mm")
        for name, (low, high) in (("azimuth", self.azimuth_deg), ("elevation", self.elevation_deg)):
            if not -89.0 <= low <= high <= 89.0:
                raise InputError(f"sector {name} range must lie within +-89 degrees, got ({low}, {high})")
        if self.azimuth_deg[1] - self.azimuth_deg[0] <= 0:
            raise InputError("sector azimuth range is empty")

    @property
    def is_3d(self) -> bool:
        """True for a pyramidal (volumetric) scan."""
        return self.elevation_deg[1] > self.elevation_deg[0]

    @classmethod
    def centred(cls, volume: Volume, depth_mm: float, angle_deg: float, elevation_angle_deg: float = 0.0):
        """A symmetric sector with its apex at the centre of the first row (and middle slice in 3D)."""
        i_size, _, k_size = volume.size
        half, half_el = angle_deg / 2.0, elevation_angle_deg / 2.0
        return cls(
            ((i_size - 1) / 2.0, 0.0, (k_size - 1) / 2.0), depth_mm, (-half, half), (-half_el, half_el)
        )

    @classmethod
    def default_for(cls, volume: Volume, max_angle_deg: float = 80.0) -> SectorGeometry:
        """The widest symmetric sector from the top-centre of the grid that spans its depth."""
        sx, sy, sz = volume.spacing
        i_size, j_size, k_size = volume.size
        if min(i_size, j_size) < MIN_SIDE or not (volume.is_2d or k_size >= MIN_SIDE):
            raise InputError(
                f"the label map is {'x'.join(map(str, volume.size[: 2 if volume.is_2d else 3]))} voxels; an "
                f"ultrasound sector needs at least {MIN_SIDE} voxels along every axis"
            )
        depth = (j_size - 1) * sy
        azimuth = min(max_angle_deg, 2 * math.degrees(math.atan2((i_size - 1) * sx / 2, depth)))
        elevation = (
            0.0
            if volume.is_2d
            else min(max_angle_deg, 2 * math.degrees(math.atan2((k_size - 1) * sz / 2, depth)))
        )
        return cls.centred(volume, depth, azimuth, elevation)

    def beam_coordinates(self, volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Range (mm), azimuth and elevation (radians) of every voxel centre, each shaped like the array."""
        sx, sy, sz = volume.spacing
        k_size, j_size, i_size = volume.array.shape
        x = (np.arange(i_size) - self.apex_index[0]) * sx
        y = (np.arange(j_size) - self.apex_index[1]) * sy
        z = (np.arange(k_size) - self.apex_index[2]) * sz
        zz, yy, xx = np.meshgrid(z, y, x, indexing="ij", sparse=True)
        radius = np.sqrt(xx**2 + yy**2 + zz**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            azimuth = np.arctan2(xx, yy)
            elevation = np.arctan2(zz, yy) if self.is_3d else np.zeros_like(zz, dtype=float)
        return (
            np.broadcast_to(radius, volume.array.shape),
            np.broadcast_to(azimuth, volume.array.shape),
            np.broadcast_to(elevation, volume.array.shape),
        )

    def mask(self, volume: Volume) -> np.ndarray:
        """Boolean array: voxels the beams reach."""
        radius, azimuth, elevation = self.beam_coordinates(volume)
        az_low, az_high = np.radians(self.azimuth_deg)
        inside = (radius <= self.depth_mm) & (azimuth >= az_low) & (azimuth <= az_high)
        if self.is_3d:
            el_low, el_high = np.radians(self.elevation_deg)
            inside &= (elevation >= el_low) & (elevation <= el_high)
        elif not volume.is_2d:
            inside &= np.abs(np.arange(volume.array.shape[0]) - self.apex_index[2])[:, None, None] < 0.5
        return inside

    @classmethod
    def fit(cls, sector_mask: Volume) -> SectorGeometry:
        """Recover the sector from a mask of the voxels inside it (2D, or 3D pyramidal).

        The straight side edges are fitted with lines whose crossing is the apex; no maintained library
        fits a scan sector, hence this small least-squares fit.
        """
        mask = np.asarray(sector_mask.array) > 0
        if not mask.any():
            raise InputError("the sector mask is empty: no voxel is inside the ultrasound sector")
        sx, sy, sz = sector_mask.spacing
        if sector_mask.is_2d:
            apex_i, apex_j, az_low, az_high = _fit_plane(mask[0], sx, sy)
            apex_k, el_low, el_high = 0.0, 0.0, 0.0
        else:
            k_mid = int(np.argmax(mask.sum(axis=(1, 2))))
            apex_i, apex_j, az_low, az_high = _fit_plane(mask[k_mid], sx, sy)
            i_mid = int(np.clip(round(apex_i), 0, mask.shape[2] - 1))
            apex_k, _, el_low, el_high = _fit_plane(mask[:, :, i_mid].T, sz, sy)
        geometry = cls((apex_i, apex_j, apex_k), 1.0, (az_low, az_high), (el_low, el_high))
        radius, _, _ = geometry.beam_coordinates(sector_mask)
        depth = float(radius[mask].max()) + 0.5 * min(sx, sy)
        return cls((apex_i, apex_j, apex_k), depth, (az_low, az_high), (el_low, el_high))


def _fit_plane(mask: np.ndarray, col_spacing: float, row_spacing: float) -> tuple[float, float, float, float]:
    """Apex (col, row) and edge angles (degrees) of a 2D sector mask with rows as depth."""
    rows = np.flatnonzero(mask.any(axis=1))
    top, bottom = rows[0], rows[-1]
    height = bottom - top + 1
    candidates = np.arange(top + int(0.1 * height), top + max(int(0.6 * height), 3))
    left, right, depth = [], [], []
    for row in candidates:
        cols = np.flatnonzero(mask[row])
        if cols.size == 0 or cols[0] == 0 or cols[-1] == mask.shape[1] - 1:
            continue  # an edge clipped by the image border says nothing about the sector
        left.append((cols[0] - 0.5) * col_spacing)
        right.append((cols[-1] + 0.5) * col_spacing)
        depth.append(row * row_spacing)
    if len(depth) < 3:
        raise InputError(
            "cannot fit a sector: the mask has too few rows with both side edges inside the image"
        )
    y = np.asarray(depth)
    slope_l, icpt_l = np.polyfit(y, left, 1)
    slope_r, icpt_r = np.polyfit(y, right, 1)
    opening = math.degrees(math.atan(slope_r) - math.atan(slope_l))
    if opening < MIN_OPENING_DEG:
        raise InputError(
            f"cannot fit a sector: the mask's side edges open by {opening:.1f} degrees with depth; an "
            f"ultrasound sector opens by at least {MIN_OPENING_DEG:g}"
        )
    apex_y = (icpt_l - icpt_r) / (slope_r - slope_l)
    apex_x = icpt_l + slope_l * apex_y
    return (
        apex_x / col_spacing,
        apex_y / row_spacing,
        math.degrees(math.atan(slope_l)),
        math.degrees(math.atan(slope_r)),
    )
