"""Resampling a case onto a fixed training grid, and back.

``pad`` keeps the physical aspect ratio: one isotropic in-plane spacing that fits the whole field of view,
the rest zero-padded, centred. ``stretch`` fills the grid, spacing per axis. With ``upscale=False`` the
grid is never finer than the source (DIFF-3's "scaled down if larger, then padded"). 2D images stay
single slices. Images are low-pass filtered before downsampling (no aliasing of the speckle), then
linearly interpolated; label maps use nearest neighbour. SimpleITK does the work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from EchoSynthLib.data.io import to_sitk
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

RESIZE_MODES = ("pad", "stretch")


@dataclass(frozen=True)
class Grid:
    """A target grid: size (i, j, k), spacing (i, j, k), origin and direction (as in Volume)."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, volume: Volume) -> Grid:
        """The grid a volume lies on."""
        return cls(volume.size, volume.spacing, volume.origin, volume.direction)

    def as_dict(self) -> dict[str, list[float]]:
        """JSON-friendly form."""
        return {k: list(getattr(self, k)) for k in ("size", "spacing", "origin", "direction")}

    @classmethod
    def from_dict(cls, values: dict) -> Grid:
        """Inverse of :meth:`as_dict`."""
        return cls(
            tuple(int(v) for v in values["size"]),
            *(tuple(values[k]) for k in ("spacing", "origin", "direction")),
        )


def target_grid(volume: Volume, shape: tuple[int, ...], mode: str = "pad", upscale: bool = True) -> Grid:
    """The grid of ``shape`` ((rows, cols) for 2D, (slices, rows, cols) for 3D) covering ``volume``."""
    if mode not in RESIZE_MODES:
        raise InputError(f"unknown resize mode '{mode}' (use {' or '.join(RESIZE_MODES)})")
    axes = 2 if volume.is_2d else 3
    if len(shape) != axes or any(int(n) < 1 for n in shape):
        raise InputError(f"a {axes}D case needs a target size of {axes} positive numbers, got {tuple(shape)}")
    size_in = np.array(volume.size[:axes], dtype=float)
    spacing_in = np.array(volume.spacing[:axes])
    size_out = np.array(shape[::-1], dtype=float)  # (i, j[, k])
    extent = size_in * spacing_in
    spacing = extent / size_out if mode == "stretch" else np.full(axes, np.max(extent / size_out))
    if not upscale:
        spacing = np.maximum(spacing, spacing_in.min() if mode == "pad" else spacing_in)
    full_size = np.array([*size_out, *([1.0] if axes == 2 else [])])
    full_spacing = np.array([*spacing, *([volume.spacing[2]] if axes == 2 else [])])
    centre = volume.ijk_to_lps() @ np.append((np.array(volume.size) - 1) / 2, 1.0)
    half_span = volume.direction_matrix @ (full_spacing * (full_size - 1) / 2)
    origin = centre[:3] - half_span
    return Grid(tuple(int(n) for n in full_size), tuple(full_spacing), tuple(origin), volume.direction)


def resample(volume: Volume, grid: Grid, labels: bool) -> Volume:
    """``volume`` on ``grid``: nearest neighbour for label maps, anti-aliased linear for images; 0 outside."""
    image = to_sitk(volume)
    if not labels:
        image = sitk.Cast(image, sitk.sitkFloat32)
        ratio = np.array(grid.spacing) / np.array(volume.spacing)
        shrinking = (ratio > 1.0) & (np.array(volume.size) > 1)
        if shrinking.any():
            # Gaussian with sigma of half the new spacing on the axes that shrink (physical units).
            sigma = np.where(shrinking, 0.5 * np.array(grid.spacing), 0.0)
            image = sitk.DiscreteGaussian(image, variance=(sigma**2).tolist(), useImageSpacing=True)
    out = sitk.Resample(
        image,
        grid.size,
        sitk.Transform(),
        sitk.sitkNearestNeighbor if labels else sitk.sitkLinear,
        grid.origin,
        grid.spacing,
        grid.direction,
        0,
        image.GetPixelID(),
    )
    return Volume(sitk.GetArrayFromImage(out), grid.spacing, grid.origin, grid.direction)
