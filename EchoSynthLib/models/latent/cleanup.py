"""Clean label maps decoded by a paired (DIFF-3) model: the largest connected component of each heart
structure, and holes inside the left ventricle (cavity + myocardium) filled as cavity, so the myocardium
surrounds one blood pool as in a real heart.

Components come from scipy's ``ndimage.label``: MONAI's ``KeepLargestConnectedComponent`` does the same
but needs scikit-image, which nothing else in EchoSynth needs.
"""

from __future__ import annotations

import numpy as np

from EchoSynthLib.data.labels import HEART, Structure


def _largest_component(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())[1:]
    return components == 1 + int(np.argmax(sizes))


def clean_labels(canonical: np.ndarray) -> np.ndarray:
    """A cleaned copy of a canonical label map (2D or 3D array); removed voxels become the sector where the
    map has one, else background."""
    from scipy import ndimage

    labels = np.array(canonical, dtype=np.uint8)
    fill = Structure.SECTOR.label if (labels == Structure.SECTOR.label).any() else Structure.BACKGROUND.label
    for structure in HEART:
        mask = labels == structure.label
        labels[mask & ~_largest_component(mask)] = fill
    ventricle = np.isin(labels, [Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label])
    holes = ndimage.binary_fill_holes(ventricle) & ~ventricle
    labels[holes] = Structure.LV_CAVITY.label
    return labels
