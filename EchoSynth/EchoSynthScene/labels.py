"""Segmentation and labelmap nodes <-> canonical label maps (0 background, 1 LV cavity, 2 myocardium,
3 left atrium, 4 sector). Segments are matched to structures by name ("LV", "Myocardium", "LA", ...)."""

from __future__ import annotations

import numpy as np
import slicer
import vtk

from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema, Structure, structure_for_segment_name
from EchoSynthLib.data.volume import Volume
from EchoSynthScene.geometry import fill_volume_node, volume_from_node
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


def label_map_from_node(node, reference=None, schema: LabelSchema = ECHOSYNTH) -> Volume:
    """The canonical label map of a segmentation (on ``reference``'s grid, else the segmentation's
    reference geometry) or of a labelmap volume (values read with ``schema``). Inputs are not changed."""
    if node is None:
        raise ValueError("no input: choose a segmentation or a labelmap volume")
    if node.IsA(LABELMAP):
        labels = volume_from_node(node)
        return labels.with_array(schema.to_canonical(labels.array))
    if node.IsA(SEGMENTATION):
        return _from_segmentation(node, reference)
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
        labelmap = scene.AddNewNodeByClass(LABELMAP, "EchoSynth export")
        logic = slicer.vtkSlicerSegmentationsModuleLogic
        if not logic.ExportSegmentsToLabelmapNode(node, ids, labelmap, reference, extent):
            raise ValueError(f"segmentation '{node.GetName()}' could not be exported to a label map")
        exported = volume_from_node(labelmap)
    # The export numbers segments 1..N in the order given; map those to canonical values.
    lookup = np.zeros(len(structures) + 1, dtype=np.uint8)
    for index, (_, structure) in enumerate(structures, start=1):
        lookup[index] = structure.label
    return exported.with_array(lookup[exported.array])


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
