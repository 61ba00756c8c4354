"""Volume nodes <-> ``EchoSynthLib.data.volume.Volume``: Slicer keeps IJK-to-RAS, the library LPS."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from EchoSynthLib.data.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def ijk_to_ras(node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix as an array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def volume_from_node(node) -> Volume:
    """A copy of a volume node's voxels (k, j, i) with its geometry, in LPS."""
    if node.GetImageData() is None:
        raise ValueError(f"volume '{node.GetName()}' has no voxels")
    array = slicer.util.arrayFromVolume(node).copy()
    return Volume.from_ijk_to_lps(array, LPS_TO_RAS @ ijk_to_ras(node))


def fill_volume_node(node, volume: Volume) -> None:
    """Set a volume node's voxels and geometry from a Volume (LPS to RAS)."""
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    matrix = vtk.vtkMatrix4x4()
    ras = LPS_TO_RAS @ volume.ijk_to_lps()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ras[r, c])
    node.SetIJKToRASMatrix(matrix)


def same_geometry(node, other) -> bool:
    """True when two volume nodes share dimensions and IJK-to-RAS."""
    return node.GetImageData().GetDimensions() == other.GetImageData().GetDimensions() and np.allclose(
        ijk_to_ras(node), ijk_to_ras(other), atol=1e-6
    )
