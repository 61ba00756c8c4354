"""2D+t inputs: a node that is the proxy of a sequence browser stands for every frame of its sequence.
Outputs of such an input become new sequences, synchronised in the same browser. A frame's parent
transform is the proxy's (the browser copies content, not node references, into the proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import slicer

from EchoSynthScene.nodes import scratch_nodes


@dataclass(frozen=True)
class SequenceInput:
    """The browser and sequence that a proxy node shows."""

    browser: object
    sequence: object

    @property
    def index_values(self) -> list[str]:
        """The index value (e.g. time) of every frame, in order."""
        return [self.sequence.GetNthIndexValue(i) for i in range(self.sequence.GetNumberOfDataNodes())]


def sequence_of(node) -> SequenceInput | None:
    """The browser and sequence if ``node`` is a sequence browser's proxy node, else None."""
    scene = node.GetScene()
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSequenceBrowserNode")):
        browser = scene.GetNthNodeByClass(index, "vtkMRMLSequenceBrowserNode")
        if browser.IsProxyNodeID(node.GetID()):
            sequence = browser.GetSequenceNode(node)
            if sequence is not None and sequence.GetNumberOfDataNodes() > 0:
                return SequenceInput(browser, sequence)
    return None


@contextmanager
def frame_in_scene(sequence_input: SequenceInput, index: int) -> Iterator[object]:
    """A temporary scene copy of frame ``index`` (exports need a node in the scene), under the proxy's
    parent transform as the frame is when shown; removed afterwards. The browser's current frame is not
    touched."""
    frame = sequence_input.sequence.GetNthDataNode(index)
    browser = sequence_input.browser
    proxy = browser.GetProxyNode(sequence_input.sequence)
    scene = browser.GetScene()
    with scratch_nodes(scene):
        copy = scene.AddNewNodeByClass(frame.GetClassName(), f"EchoSynth frame {index}")
        copy.CopyContent(frame, True)  # content only: node references such as the transform stay out
        if proxy is not None:
            copy.SetAndObserveTransformNodeID(proxy.GetTransformNodeID())
        yield copy


def sequences_logic(scene):
    """Slicer's sequences logic (a new one bound to ``scene`` where slicer.modules is absent)."""
    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "sequences"):
        return modules.sequences.logic()
    logic = slicer.vtkSlicerSequencesLogic()
    logic.SetMRMLScene(scene)
    return logic


def add_output_sequence(sequence_input: SequenceInput, name: str, frames: list) -> tuple[object, object]:
    """A new sequence of ``frames`` (nodes outside the scene, one per input frame, copied in) with the
    input's index values, synchronised in the input's browser. Returns (sequence, its proxy node)."""
    source = sequence_input.sequence
    scene = sequence_input.browser.GetScene()
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(source.GetIndexName())
    sequence.SetIndexUnit(source.GetIndexUnit())
    sequence.SetIndexType(source.GetIndexType())
    for value, frame in zip(sequence_input.index_values, frames, strict=True):
        sequence.SetDataNodeAtValue(frame, value)
    browser = sequence_input.browser
    browser.AddSynchronizedSequenceNodeID(sequence.GetID())
    sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    if proxy is not None:
        proxy.SetName(name)
    return sequence, proxy
