"""The ultrasound sector (the scanned fan or cone) derived from an image.

Echo images are black outside the sector, but dark blood pools inside it can be black too, and scanners
burn text and ECG traces into the frame. So: threshold, close small gaps, fill holes, keep the largest
connected component, then take its convex hull (a sector is convex). scipy provides each step; the
composition is ours because no maintained library offers an ultrasound-sector extractor.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay, QhullError

from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError


def _hull_mask(mask: np.ndarray) -> np.ndarray:
    """Voxels inside the convex hull of the mask's voxels (2D or 3D array)."""
    points = np.argwhere(mask)
    try:
        hull = ConvexHull(points)
    except QhullError:  # flat or tiny: the mask itself is its hull
        return mask
    vertices = points[hull.vertices]
    lower, upper = vertices.min(axis=0), vertices.max(axis=0) + 1
    box = tuple(slice(a, b) for a, b in zip(lower, upper, strict=True))
    grid = np.stack(
        np.meshgrid(*[np.arange(a, b) for a, b in zip(lower, upper, strict=True)], indexing="ij"), -1
    )
    inside = Delaunay(vertices).find_simplex(grid.reshape(-1, mask.ndim)) >= 0
    out = mask.copy()
    out[box] |= inside.reshape(grid.shape[:-1])
    return out


def sector_mask_from_image(
    image: Volume, threshold: float | None = None, closing_fraction: float = 0.02
) -> np.ndarray:
    """Boolean (k, j, i) mask of the sector in ``image``.

    ``threshold``: intensities above it are in the sector (default: 1 % of the image's range above its
    minimum). ``closing_fraction``: size of the gap-closing structuring element, as a fraction of the
    image's largest side.
    """
    array = np.asarray(image.array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise InputError("the image contains NaN or infinite values")
    planes = array[0] if image.is_2d else array
    low, high = float(planes.min()), float(planes.max())
    if high <= low:
        raise InputError("the image is constant: no ultrasound sector can be found in it")
    if threshold is None:
        threshold = low + 0.01 * (high - low)
    mask = planes > threshold
    radius = max(1, round(closing_fraction * max(planes.shape)))
    structure = ndimage.iterate_structure(ndimage.generate_binary_structure(planes.ndim, 1), radius)
    mask = ndimage.binary_closing(np.pad(mask, radius), structure)[
        tuple(slice(radius, -radius) for _ in planes.shape)
    ]
    mask = ndimage.binary_fill_holes(mask)
    components, count = ndimage.label(mask)
    if count == 0:
        raise InputError(f"no voxel of the image is above {threshold:.4g}: no ultrasound sector found")
    sizes = np.bincount(components.ravel())[1:]
    mask = components == (int(np.argmax(sizes)) + 1)
    mask = _hull_mask(mask)
    return mask[np.newaxis] if image.is_2d else mask
