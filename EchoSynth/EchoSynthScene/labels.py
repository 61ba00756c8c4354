"""Segmentation and labelmap nodes <-> canonical label maps (0 background, 1 LV cavity, 2 myocardium,
3 left atrium, 4 sector). Segments are matched to structures by name ("LV", "Myocardium", "LA", ...)."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema, Structure, structure_for_segment_name
from EchoSynthLib.data.volume import Volume
from EchoSynthScene.geometry import (
    fill_volume_node,
    ijk_to_ras,
    in_frame_of,
    matrix_between,
    set_ijk_to_ras,
    volume_from_node,
)
from EchoSynthScene.nodes import scratch_nodes

SEGMENTATION = "vtkMRMLSegmentationNode"
LABELMAP = "vtkMRMLLabelMapVolumeNode"


def is_label_input(node) -> bool:
    """True for the node types EchoSynth takes as input: segmentations and labelmap volumes."""
    return node is not None and (node.IsA(SEGMENTATION) or node.IsA(LABELMAP))


def segment_structures(segmentation_node) -> list[tuple[str, Structure]]:
    """(segment ID, structure) of every segment; an unknown segment name is an error naming it."""
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    if not ids:
        raise ValueError(f"segmentation '{segmentation_node.GetName()}' has no segments")
    return [(i, structure_for_segment_name(segmentation.GetSegment(i).GetName())) for i in ids]


def _reference_grid(node, reference):
    """The reference volume whose grid a segmentation is exported onto (None for a labelmap volume, or a
    reference without voxels: Slicer's export would use the segmentation's geometry, yet put the result
    under the reference's transform)."""
    usable = reference is not None and reference.GetImageData() is not None
    return reference if usable and node.IsA(SEGMENTATION) else None


def label_frame(node, reference=None):
    """The node in whose local coordinates (under its parent transform) ``label_map_from_node(node,
    reference)`` lies: the reference volume for a segmentation exported onto its grid, else ``node``."""
    grid = _reference_grid(node, reference)
    return node if grid is None else grid


def label_map_from_node(node, reference=None, schema: LabelSchema = ECHOSYNTH) -> Volume:
    """The canonical label map of a segmentation (on ``reference``'s grid, else the segmentation's
    reference geometry) or of a labelmap volume (values read with ``schema``), in the local coordinates of
    ``label_frame(node, reference)``. Inputs are not changed."""
    if node is None:
        raise ValueError("no input: choose a segmentation or a labelmap volume")
    if node.IsA(LABELMAP):
        labels = volume_from_node(node)
        return labels.with_array(schema.to_canonical(labels.array))
    if node.IsA(SEGMENTATION):
        return _from_segmentation(node, _reference_grid(node, reference))
    raise ValueError(f"'{node.GetName()}' is a {node.GetClassName()}; expected a segmentation or labelmap")


def _from_segmentation(node, reference) -> Volume:
    structures = segment_structures(node)
    ids = vtk.vtkStringArray()
    for segment_id, _ in structures:
        ids.InsertNextValue(segment_id)
    has_geometry = bool(node.GetSegmentation().GetConversionParameter("Reference image geometry"))
    extent = (
        slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
        if has_geometry
        else slicer.vtkSegmentation.EXTENT_UNION_OF_SEGMENTS
    )
    scene = node.GetScene()
    with scratch_nodes(scene):
        moved = reference is not None and reference.GetTransformNodeID() != node.GetTransformNodeID()
        grid = _grid_beside(reference, node) if moved else reference
        labelmap = scene.AddNewNodeByClass(LABELMAP, "EchoSynth export")
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(node, ids, labelmap, grid, extent):
            raise ValueError(f"segmentation '{node.GetName()}' could not be exported to a label map")
        exported = volume_from_node(labelmap)
    if moved:
        exported = in_frame_of(exported, node, reference)  # back on the reference's own grid
    # The export numbers segments 1..N in the order given; map those to canonical values.
    lookup = np.zeros(len(structures) + 1, dtype=np.uint8)
    for index, (_, structure) in enumerate(structures, start=1):
        lookup[index] = structure.label
    return exported.with_array(lookup[exported.array])


def _grid_beside(reference, node):
    """A scratch stand-in for ``reference`` under ``node``'s parent transform: its grid (no voxels) moved
    into ``node``'s local coordinates. The export then stays in one frame: Slicer's own export across two
    parent transforms crops an oblique grid (seen with slicer-core, even with two identity transforms),
    and here a warp between them is refused by name rather than followed."""
    stand_in = node.GetScene().AddNewNodeByClass("vtkMRMLScalarVolumeNode", "EchoSynth reference")
    image = vtk.vtkImageData()
    image.SetExtent(reference.GetImageData().GetExtent())
    stand_in.SetAndObserveImageData(image)
    set_ijk_to_ras(stand_in, matrix_between(reference, node) @ ijk_to_ras(reference))
    stand_in.SetAndObserveTransformNodeID(node.GetTransformNodeID())
    return stand_in


def add_segmentation_node(scene, labels: Volume, name: str):
    """A new segmentation node with one named, coloured segment per structure of a canonical map."""
    node = scene.AddNewNodeByClass(SEGMENTATION, name)
    with scratch_nodes(scene):
        labelmap = scene.AddNewNodeByClass(LABELMAP, "EchoSynth import")
        fill_volume_node(labelmap, labels.with_array(labels.array.astype(np.uint8)))
        node.SetReferenceImageGeometryParameterFromVolumeNode(labelmap)
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node):
            raise ValueError(f"label map '{name}' could not be imported as a segmentation")
    segmentation = node.GetSegmentation()
    by_value = {s.label: s for s in Structure}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        structure = by_value[segment.GetLabelValue()]
        segment.SetName(structure.display_name)
        segment.SetColor(*structure.color)
    node.CreateDefaultDisplayNodes()
    return node
