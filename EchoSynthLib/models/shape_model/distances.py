"""Label maps as signed distances and back: the shape model's coordinates.

A map's regions (the LV cavity, the epicardium = cavity + myocardium, the atrium, the sector) become signed
distance maps on a small square grid (negative inside; scipy's Euclidean distance transform). A linear
combination of such maps has a smooth zero level set, so a principal component model of them draws
smooth new regions (the level-set shape models of Leventon et al. 2000 and Tsai et al. 2003). Back to a
label map: each region is where its distance is negative, nested as in a heart (the cavity inside the
myocardium, the atrium outside the ventricle, everything inside the sector), then cleaned (one component
per structure, no holes in the ventricle: ``models.latent.cleanup``). No maintained library turns label
maps into signed-distance shape coordinates and back, so this is ours.
"""

from __future__ import annotations

import numpy as np

from EchoSynthLib.data.labels import Structure

CAVITY, MYOCARDIUM = Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label
ATRIUM, SECTOR, BACKGROUND = Structure.LEFT_ATRIUM.label, Structure.SECTOR.label, Structure.BACKGROUND.label
# Each region of the model: the canonical labels it is the union of.
REGIONS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("cavity", (CAVITY,)),
    ("epicardium", (CAVITY, MYOCARDIUM)),
    ("atrium", (ATRIUM,)),
    ("sector", (CAVITY, MYOCARDIUM, ATRIUM, SECTOR)),
)


def _resized(array: np.ndarray, shape: tuple[int, int], order: int) -> np.ndarray:
    from scipy import ndimage

    factors = [s / a for s, a in zip(shape, array.shape[-2:], strict=True)]
    return ndimage.zoom(array, [1] * (array.ndim - 2) + factors, order=order, grid_mode=True, mode="nearest")


def signed_distances(labels: np.ndarray, grid: int, band: float = 0.0) -> np.ndarray:
    """(regions, grid, grid) float32 signed distances, in grid pixels, of a canonical 2D map (H, W); with
    ``band`` > 0 clipped to +/- ``band`` (far from a boundary a distance says little about the shape);
    a region the map lacks is ``band`` (else ``grid``) outside everywhere."""
    from scipy import ndimage

    small = _resized(np.asarray(labels).reshape(labels.shape[-2:]), (grid, grid), order=0)
    out = np.empty((len(REGIONS), grid, grid), np.float32)
    for index, (_, members) in enumerate(REGIONS):
        inside = np.isin(small, members)
        if not inside.any():
            out[index] = band or grid
            continue
        out[index] = ndimage.distance_transform_edt(~inside) - ndimage.distance_transform_edt(inside)
    return np.clip(out, -band, band) if band > 0 else out


def _at_least(distance: np.ndarray, allowed: np.ndarray, count: int) -> np.ndarray:
    """Where ``distance`` < 0 within ``allowed``; where that is fewer than ``count`` pixels, the ``count``
    pixels of ``allowed`` with the lowest distance (the region's own shape at a raised level)."""
    inside = (distance < 0) & allowed
    values = distance[allowed]
    if inside.sum() >= count or values.size <= count:
        return inside
    return (distance < np.partition(values, count)[count]) & allowed


def labels_from(distances: np.ndarray, shape: tuple[int, int], minimum: float = 0.0) -> np.ndarray:
    """The canonical uint8 map (H, W) = ``shape`` whose regions are where the signed distances (regions,
    g, g), interpolated to ``shape``, are negative; nested as a heart and cleaned. ``minimum``: the
    smallest share of the map each heart region covers (a structure every training map has is not drawn
    away where its distances stay positive: a region of many shapes' mean, as the atrium, may)."""
    from EchoSynthLib.models.latent.cleanup import clean_labels

    fields = _resized(np.asarray(distances, np.float32), shape, order=1)
    count = int(minimum * shape[0] * shape[1])
    sector = fields[3] < 0
    cavity = _at_least(fields[0], sector, count)
    epicardium = _at_least(fields[1], sector, count) | cavity
    atrium = _at_least(fields[2], sector & ~epicardium, count)
    labels = np.full(shape, BACKGROUND, np.uint8)
    labels[sector] = SECTOR
    labels[atrium & ~epicardium] = ATRIUM
    labels[epicardium] = MYOCARDIUM
    labels[cavity] = CAVITY
    labels[~sector] = BACKGROUND
    return clean_labels(labels)
