"""Cutting a 2D plane out of a 3D label map, as a single-slice volume that keeps its place in space.

A 2D generator needs a single slice. For a 3D echo volume (i lateral, j depth, k elevation) the useful
planes contain the depth axis, so the probe stays at the top of the cut:
- ``ij``: the plane at a fixed k (azimuth plane; the default),
- ``kj``: the plane at a fixed i (elevation plane); its columns run along k.
The cut's direction matrix and origin place it exactly where it lies in the volume, so images made on it
land back on the input in a viewer.
"""

from __future__ import annotations

import numpy as np

from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

PLANES = ("ij", "kj")
# Not a plane: the value of the sampling option ``plane`` that has a 2D model draw every ij plane of a 3D map
# into a volume (``inference.generators.PlaneByPlaneGenerator``).
VOLUME = "volume"


def slice_of(labels: Volume, index: int | None = None, plane: str = "ij") -> Volume:
    """Slice ``index`` (default: the middle) of ``plane`` as a single-slice volume; a 2D map as it is
    (asking for a slice or another plane of a 2D map is an InputError: it would be silently ignored)."""
    if labels.is_2d:
        if index is not None or plane != "ij":
            asked = f"slice {index}" if index is not None else f"plane {plane}"
            raise InputError(f"{asked} asked of a 2D map: --slice and --plane pick a plane of a 3D map")
        return labels
    if plane not in PLANES:
        raise InputError(f"unknown plane '{plane}' (use {' or '.join(PLANES)})")
    across = 2 if plane == "ij" else 0  # the (i, j, k) axis the plane is cut across
    count = labels.size[across]
    index = count // 2 if index is None else index
    if not 0 <= index < count:
        raise InputError(f"slice {index} is outside the volume (0..{count - 1} across plane {plane})")
    corner = [0.0, 0.0, 0.0, 1.0]
    corner[across] = float(index)
    origin = tuple((labels.ijk_to_lps() @ np.array(corner))[:3])
    if plane == "ij":
        return Volume(labels.array[index : index + 1], labels.spacing, origin, labels.direction)
    # kj: rows stay j (depth), columns become k; the cut's axes (i', j', k') are the volume's (k, j, i).
    array = np.ascontiguousarray(labels.array[:, :, index].T[np.newaxis])
    order = [2, 1, 0]
    direction = labels.direction_matrix[:, order]
    spacing = tuple(labels.spacing[a] for a in order)
    return Volume(array, spacing, origin, tuple(direction.ravel()))
