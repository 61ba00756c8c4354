"""Adding and removing nodes: outputs go into the input's study; helper nodes never outlive their use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import slicer

from EchoSynthLib.data.volume import Volume
from EchoSynthScene.geometry import fill_volume_node


def node_ids(scene) -> set[str]:
    """The IDs of every node in the scene."""
    return {scene.GetNthNode(index).GetID() for index in range(scene.GetNumberOfNodes())}


@contextmanager
def scratch_nodes(scene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block (helper labelmaps, their display and colour
    nodes), so that reading the inputs leaves the scene as it was."""
    before = node_ids(scene)
    try:
        yield
    finally:
        for node_id in node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is not None:
                scene.RemoveNode(node)


def remove_nodes(nodes: Iterable) -> None:
    """Remove nodes from their scene (those already gone are skipped)."""
    for node in nodes:
        scene = node.GetScene()
        if scene is not None:
            scene.RemoveNode(node)


def image_node(volume: Volume, name: str):
    """A scalar volume node outside any scene, holding ``volume`` (for sequences, which copy it)."""
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName(name)
    fill_volume_node(node, volume)
    return node


def add_image_node(scene, volume: Volume, name: str):
    """A new scalar volume node in ``scene`` holding ``volume``, with display nodes."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    fill_volume_node(node, volume)
    node.CreateDefaultDisplayNodes()
    return node


def hierarchy_item(node) -> int:
    """The subject-hierarchy item of ``node``, made at scene level if it has none yet (Slicer's plugins
    make one for every new node; the bare MRML library does not)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    item = hierarchy.GetItemByDataNode(node)
    return item or hierarchy.CreateItem(hierarchy.GetSceneItemID(), node)


def place_in_study(node, beside) -> None:
    """Put ``node`` under the subject-hierarchy parent (study, or scene) of ``beside``."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    hierarchy.SetItemParent(hierarchy_item(node), hierarchy.GetItemParent(hierarchy_item(beside)))
