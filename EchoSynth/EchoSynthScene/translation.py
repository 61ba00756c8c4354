"""Translation from scene nodes, through a worker process (the "Translate" mode).

A scalar volume (one 2D frame, or a 2D+t sequence: every frame) and, optionally, a segmentation of it go
into a 'translate' job folder; the worker translates each frame with a label-guided model (anatomy from
the segmentation and/or the CAMUS segmenter, which fills only the structures the segmentation lacks;
``EchoSynthLib.sampling.translate``); the result comes back as a new volume (or sequence, in the same
browser) in the input volume's study and under its parent transform, all of it or nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.inference.generators import SIMULATOR
from EchoSynthLib.jobs.launcher import JobEvent
from EchoSynthLib.jobs.spec import TRANSLATE, JobSpec, SynthesisOptions
from EchoSynthScene.geometry import in_frame_of, volume_from_node
from EchoSynthScene.labels import label_frame, label_map_from_node
from EchoSynthScene.sequences import frame_in_scene, sequence_of
from EchoSynthScene.synthesis import INPUTS_DIR, BackgroundSynthesis, SceneJob, wait_for

SEGMENTER = "segmenter-camus"
SUFFIX = "translated"


def translation_problem(volume_node, segmentation_node, generator: str, segment: bool) -> str | None:
    """Why Translate cannot run yet (a sentence for the panel), or None."""
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        return "Select the echo volume to translate"
    if volume_node.GetImageData() is None:
        return f"The volume '{volume_node.GetName()}' has no voxels"
    if segmentation_node is None and not segment:
        return "Select its segmentation, or let the segmenter label it"
    if not generator or generator == SIMULATOR:
        return "Choose a label-guided model to translate with"
    return None


def _frames(node) -> tuple[object | None, int]:
    sequence = sequence_of(node) if node is not None else None
    return sequence, len(sequence.index_values) if sequence else 1


def prepare_translation(
    volume_node,
    folder: str | Path,
    options: SynthesisOptions,
    segmentation_node=None,
    segment: bool = False,
    segmenter: str = SEGMENTER,
) -> SceneJob:
    """Write every frame of ``volume_node`` (and of its segmentation, on the frame's grid, across parent
    transforms) and a 'translate' job into ``folder``. A segmentation that is a sequence in the same
    browser gives each frame its own map; any other is used for every frame. Bad input is a ValueError
    naming it."""
    if volume_node is None or not volume_node.IsA("vtkMRMLScalarVolumeNode"):
        what = (
            "nothing" if volume_node is None else f"'{volume_node.GetName()}' ({volume_node.GetClassName()})"
        )
        raise ValueError(f"the input must be a scalar volume, got {what}")
    if segmentation_node is None and not segment:
        raise ValueError("translation needs a segmentation of the volume or the segmenter")
    options = replace(options, n=1, augment=0)  # one translated image per frame
    folder = Path(folder)
    (folder / INPUTS_DIR).mkdir(parents=True, exist_ok=True)
    sequence, count = _frames(volume_node)
    label_sequence, label_count = _frames(segmentation_node)
    per_frame = (
        label_sequence is not None
        and sequence is not None
        and label_sequence.browser is sequence.browser
        and label_count == count
    )
    images: list[str] = []
    labels: list[str] = []
    for index in range(count):
        if sequence is None:
            image = volume_from_node(volume_node)
        else:
            with frame_in_scene(sequence, index) as frame:
                image = volume_from_node(frame)
        name = f"{INPUTS_DIR}/image{index:04d}.nrrd"
        write_image(image, folder / name)
        images.append(name)
        if segmentation_node is None:
            continue
        reference = volume_node if sequence is None else None
        # The translation is the volume's, under its parent transform; a label map under another one is
        # moved onto the volume in world (a warp between them is refused: a Volume has one linear grid).
        if per_frame:
            with frame_in_scene(label_sequence, index) as frame:
                label_map = label_map_from_node(frame, reference)
                label_map = in_frame_of(label_map, label_frame(frame, reference), volume_node)
        else:
            label_map = label_map_from_node(segmentation_node, reference)
            label_map = in_frame_of(label_map, label_frame(segmentation_node, reference), volume_node)
        if not label_map.same_geometry(image):
            from EchoSynthLib.preprocessing.resample import Grid, resample

            label_map = resample(label_map, Grid.of(image), labels=True)
        name = f"{INPUTS_DIR}/labels{index:04d}.nrrd"
        write_label_map(label_map, folder / name)
        labels.append(name)
    spec = JobSpec(
        task=TRANSLATE,
        inputs=tuple(images),
        labels=tuple(labels),
        segment=segment,
        segmenter=segmenter,
        **asdict(options),
    )
    spec.write(folder)
    return SceneJob(folder, volume_node, options, sequence, image_suffix=SUFFIX)


class BackgroundTranslation(BackgroundSynthesis):
    """One Translate run in a worker process; ``finish()`` adds the translated volume (or sequence) beside
    the input volume."""

    def __init__(
        self,
        volume_node,
        options: SynthesisOptions,
        segmentation_node=None,
        segment: bool = False,
        segmenter: str = SEGMENTER,
    ) -> None:
        self._start(
            lambda folder: prepare_translation(
                volume_node, folder, options, segmentation_node, segment, segmenter
            )
        )


def translate(
    volume_node,
    segmentation_node=None,
    progress: Callable[[JobEvent], None] | None = None,
    segment: bool = False,
    segmenter: str = SEGMENTER,
    **options,
) -> list:
    """Blocking: translate ``volume_node`` (every frame of a sequence) and return the new nodes."""
    run = BackgroundTranslation(
        volume_node, SynthesisOptions.from_keywords(**options), segmentation_node, segment, segmenter
    )
    return wait_for(run, progress)
