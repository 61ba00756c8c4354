"""Volume nodes <-> ``EchoSynthLib.data.volume.Volume``: Slicer keeps IJK-to-RAS, the library LPS.

Geometry is a node's local IJK-to-RAS, in the coordinates under its parent transform (tracking, say);
outputs go under the parent transform of the node whose grid they take, so they stay on it in world."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from EchoSynthLib.data.volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras(node) -> np.ndarray:
    """The node's local 4x4 IJK-to-RAS matrix (without its parent transforms) as an array."""
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return _array(matrix)


def matrix_between(source, target) -> np.ndarray:
    """The 4x4 matrix from ``source``'s local RAS (under its parent transforms) to ``target``'s; a
    ValueError naming both when a warping (non-linear) transform lies between them."""
    matrix = vtk.vtkMatrix4x4()
    between = slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes
    if not between(source.GetParentTransformNode(), target.GetParentTransformNode(), matrix):
        raise ValueError(
            f"'{source.GetName()}' and '{target.GetName()}' are under transforms that differ by a warp "
            "(not linear): put both under the same transform, or harden the warp first"
        )
    return _array(matrix)


def in_frame_of(volume: Volume, source, target) -> Volume:
    """``volume``, read from ``source`` (local coordinates), on the same place in ``target``'s local
    coordinates: its grid moved by the transform between their parents (none when they share one)."""
    if source.GetTransformNodeID() == target.GetTransformNodeID():
        return volume
    ras = matrix_between(source, target) @ LPS_TO_RAS @ volume.ijk_to_lps()
    return Volume.from_ijk_to_lps(volume.array, LPS_TO_RAS @ ras)


def volume_from_node(node) -> Volume:
    """A copy of a volume node's voxels (k, j, i) with its geometry, in LPS."""
    if node.GetImageData() is None:
        raise ValueError(f"volume '{node.GetName()}' has no voxels")
    array = slicer.util.arrayFromVolume(node).copy()
    return Volume.from_ijk_to_lps(array, LPS_TO_RAS @ ijk_to_ras(node))


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4x4 array as a VTK matrix."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, array[r, c])
    return matrix


def set_ijk_to_ras(node, ras: np.ndarray) -> None:
    """Set a volume node's local IJK-to-RAS from a 4x4 array."""
    node.SetIJKToRASMatrix(vtk_matrix(ras))


def fill_volume_node(node, volume: Volume) -> None:
    """Set a volume node's voxels and geometry from a Volume (LPS to RAS)."""
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))
    set_ijk_to_ras(node, LPS_TO_RAS @ volume.ijk_to_lps())


def same_geometry(node, other) -> bool:
    """True when two volume nodes share dimensions and IJK-to-RAS."""
    return node.GetImageData().GetDimensions() == other.GetImageData().GetDimensions() and np.allclose(
        ijk_to_ras(node), ijk_to_ras(other), atol=1e-6
    )
