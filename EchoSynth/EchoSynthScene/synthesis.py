"""Synthesis from scene nodes, through a worker process: files in, files out.

``prepare_job`` writes the input's label map(s) (every frame of a sequence) and a ``job.json`` into a
job folder; a worker (``EchoSynthLib.jobs``) makes the images there; ``import_results`` turns its
``result.json`` into new nodes, all of them or none. The scene is not touched until the worker has
finished, so a cancelled or failed run leaves it as it was. ``synthesize`` does all three, blocking.
"Generate cases" is the same with no input: ``prepare_generation`` writes a 'generate' job for a paired
model, and ``import_cases`` adds each case's volume and segmentation to a new study.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import slicer

from EchoSynthLib.data.io import read_image, read_label_map, write_label_map
from EchoSynthLib.data.labels import require_heart
from EchoSynthLib.jobs.launcher import JobEvent, JobProcess
from EchoSynthLib.jobs.spec import GENERATE, JobSpec, SynthesisOptions, read_pairs, read_result
from EchoSynthScene.labels import add_segmentation_node, is_label_input, label_frame, label_map_from_node
from EchoSynthScene.nodes import add_image_node, hierarchy_item, image_node, place_in_study, remove_nodes
from EchoSynthScene.sequences import SequenceInput, add_output_sequence, frame_in_scene, sequence_of

INPUTS_DIR = "inputs"


@dataclass
class SceneJob:
    """A job folder prepared from an input node, and what is needed to bring its results back."""

    folder: Path
    input_node: object
    options: SynthesisOptions
    sequence: SequenceInput | None = None
    image_suffix: str = "echo"  # output images are named "<input> <image_suffix>"
    frame: object | None = None  # the node whose grid the outputs take (None: input_node)

    @property
    def transform_id(self) -> str | None:
        """Outputs go under this parent transform, the one of the node whose local coordinates they are
        in (read when importing, so they follow a transform changed during the run)."""
        return (self.input_node if self.frame is None else self.frame).GetTransformNodeID()

    @property
    def base_name(self) -> str:
        """Output names start with this: the input's name (its sequence's, for a sequence)."""
        node = self.sequence.sequence if self.sequence else self.input_node
        return node.GetName()


def input_problem(input_node, generator: str) -> str | None:
    """Why Generate cannot run yet (a sentence for the panel), or None when the inputs are usable."""
    if not is_label_input(input_node):
        return "Select an input segmentation or labelmap volume"
    if input_node.IsA("vtkMRMLSegmentationNode"):
        if input_node.GetSegmentation().GetNumberOfSegments() == 0:
            return f"The segmentation '{input_node.GetName()}' has no segments"
    elif input_node.GetImageData() is None:
        return f"The labelmap volume '{input_node.GetName()}' has no voxels"
    if not generator:
        return "Choose a generator"
    return None


def prepare_job(input_node, folder: str | Path, options: SynthesisOptions, reference=None) -> SceneJob:
    """Write the label map of ``input_node`` (each frame of a sequence) and the job file into ``folder``.

    Bad input (no node, unknown segment names, no heart structure, NaNs) is a ValueError naming it."""
    if not is_label_input(input_node):
        what = "nothing" if input_node is None else f"'{input_node.GetName()}' ({input_node.GetClassName()})"
        raise ValueError(f"the input must be a segmentation or a labelmap volume, got {what}")
    folder = Path(folder)
    (folder / INPUTS_DIR).mkdir(parents=True, exist_ok=True)
    sequence = sequence_of(input_node)
    if sequence is not None and options.augment:
        raise ValueError("'augment anatomy' works on one label map, not on every frame of a sequence")
    frames: list[str] = []
    count = len(sequence.index_values) if sequence else 1
    for index in range(count):
        if sequence is None:
            labels = label_map_from_node(input_node, reference)
        else:
            with frame_in_scene(sequence, index) as frame:
                labels = label_map_from_node(frame, reference)
        where = f"'{input_node.GetName()}'" + (f" frame {index}" if sequence else "")
        try:
            require_heart(labels.array)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        name = f"{INPUTS_DIR}/frame{index:04d}.nrrd"
        write_label_map(labels, folder / name)
        frames.append(name)
    spec = JobSpec(inputs=tuple(frames), **asdict(options))
    spec.write(folder)
    # A segmentation exported onto a reference volume lies in the reference's coordinates: the outputs,
    # on its grid, go under its parent transform (a labelmap input keeps its own grid and transform).
    return SceneJob(folder, input_node, options, sequence, frame=label_frame(input_node, reference))


def generation_problem(generator: str) -> str | None:
    """Why "Generate cases" cannot run yet (a sentence for the panel), or None."""
    if not generator or generator == "simulator":
        return "Choose a paired-generation model (it makes image + label cases from nothing)"
    return None


def prepare_generation(folder: str | Path, options: SynthesisOptions) -> SceneJob:
    """Write a 'generate' job (``options.n`` cases of the paired model ``options.generator``)."""
    if options.augment:
        raise ValueError("'augment anatomy' needs an input label map; generated cases have none")
    spec = JobSpec(task=GENERATE, **asdict(options))
    spec.write(folder)
    return SceneJob(Path(folder), None, options)


def import_cases(job: SceneJob, scene, study_name: str = "EchoSynth generated cases") -> list:
    """Each generated case as a volume and a segmentation node, in a new study (under a new subject) of
    ``scene``. Either every node is added or, on any error, none (and no study)."""
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    subject = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), study_name)
    study = hierarchy.CreateStudyItem(subject, f"{Path(job.options.generator).name}, seed {job.options.seed}")
    added: list = []
    try:
        for k, (image, labels) in enumerate(read_pairs(job.folder)):
            name = f"case {k + 1}"
            volume = add_image_node(scene, read_image(job.folder / image), f"{name} echo")
            segmentation = add_segmentation_node(scene, read_label_map(job.folder / labels), f"{name} labels")
            for node in (volume, segmentation):
                added.append(node)
                hierarchy.SetItemParent(hierarchy_item(node), study)
    except Exception:
        remove_nodes(added)
        hierarchy.RemoveItem(subject)
        raise
    return added


def _tracks(job: SceneJob) -> dict[str, list[tuple[str, Path]]]:
    """Output name suffix -> ('image' | 'labels', file) per input frame, in frame order."""
    results, _ = read_result(job.folder)

    def echo(k: int) -> str:  # one image per map: "LV echo" rather than "LV echo 1"
        return job.image_suffix if job.options.n == 1 else f"{job.image_suffix} {k + 1}"

    tracks: dict[str, list[tuple[str, Path]]] = {}
    for result in results:
        entries = [(echo(k), "image", p) for k, p in enumerate(result.images)]
        for j, (labels, images) in enumerate(result.augmented, start=1):
            entries.append((f"anatomy {j}", "labels", labels))
            entries += [(f"anatomy {j} {echo(k)}", "image", p) for k, p in enumerate(images)]
        for suffix, kind, path in entries:
            tracks.setdefault(suffix, []).append((kind, job.folder / path))
    return tracks


def import_results(job: SceneJob) -> list:
    """New nodes for a finished job (sequences for a sequence input), placed in the input's study and
    under its parent transform (``SceneJob.transform_id``). Either every node is added or, on any error,
    none."""
    scene = job.input_node.GetScene()
    added: list = []
    try:
        for suffix, frames in _tracks(job).items():
            name = f"{job.base_name} {suffix}"
            kind = frames[0][0]
            if job.sequence is None:
                ((_, path),) = frames
                node = (
                    add_image_node(scene, read_image(path), name)
                    if kind == "image"
                    else add_segmentation_node(scene, read_label_map(path), name)
                )
                added.append(node)
                node.SetAndObserveTransformNodeID(job.transform_id)
                place_in_study(node, job.input_node)
            else:
                nodes = [image_node(read_image(path), name) for _, path in frames]
                sequence, proxy = add_output_sequence(job.sequence, name, nodes)
                added += [n for n in (sequence, proxy) if n is not None]
                if proxy is not None:  # the browser keeps a proxy's transform from frame to frame
                    proxy.SetAndObserveTransformNodeID(job.transform_id)
                    place_in_study(proxy, job.input_node)
    except Exception:
        remove_nodes(added)
        raise
    return added


def python_executable() -> str:
    """The Python that runs workers: Slicer's ``PythonSlicer`` inside Slicer, else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def start_worker(job: SceneJob) -> JobProcess:
    """Start the worker process for a prepared job (the CPU is forced through its environment)."""
    return JobProcess(job.folder, python=python_executable(), device=job.options.device)


class BackgroundSynthesis:
    """One synthesis run in a worker process, for a panel that polls it from a timer.

    ``poll()`` gives the worker's new events; ``finish()`` brings the results into the scene; ``cancel()``
    kills the worker's process tree. Either way the temporary job folder is removed."""

    def __init__(self, input_node, options: SynthesisOptions, reference=None) -> None:
        self._start(lambda folder: prepare_job(input_node, folder, options, reference))

    def _start(self, prepare: Callable[[Path], SceneJob]) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="EchoSynth-"))
        try:
            self.job = prepare(self.folder)
            self.worker = start_worker(self.job)
        except BaseException:
            self.cleanup()
            raise

    def _import(self) -> list:
        return import_results(self.job)

    @property
    def running(self) -> bool:
        """True while the worker runs."""
        return self.worker.running

    def poll(self) -> list[JobEvent]:
        """New events of the worker (never blocks)."""
        return self.worker.poll()

    def cancel(self) -> None:
        """Kill the worker and its children; the scene is left as it was."""
        try:
            self.worker.cancel()
        finally:
            self.cleanup()

    def finish(self) -> list:
        """The new nodes of a finished run (JobFailed with the worker's message if it failed)."""
        try:
            self.worker.check()
            return self._import()
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        """Remove the job folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


class BackgroundGeneration(BackgroundSynthesis):
    """One "Generate cases" run (no input) in a worker process; ``finish()`` adds the cases to a new study
    of ``scene``."""

    def __init__(self, scene, options: SynthesisOptions) -> None:
        self.scene = scene
        self._start(lambda folder: prepare_generation(folder, options))

    def _import(self) -> list:
        return import_cases(self.job, self.scene)


def generate_cases(scene, progress: Callable[[JobEvent], None] | None = None, **options) -> list:
    """Blocking: generate ``n`` cases with the paired model ``generator`` and return the new nodes."""
    return wait_for(BackgroundGeneration(scene, SynthesisOptions.from_keywords(**options)), progress)


def keep_gui_alive() -> Callable[[], None] | None:
    """What a blocking call runs between polls of its worker: Slicer's event processing, so the application
    does not show "Not Responding" during a long run from the console (as ``slicer.util.logProcessOutput``
    does); None without a Slicer application (slicer-core alone, plain Python)."""
    app = getattr(slicer, "app", None)
    return getattr(app, "processEvents", None)


def wait_for(run: BackgroundSynthesis, progress: Callable[[JobEvent], None] | None) -> list:
    """Block until ``run`` ends (cancelling it on any error or interrupt), keeping the GUI alive; its new
    nodes."""
    try:
        run.worker.wait(on_event=progress, idle=keep_gui_alive())
    except BaseException:
        run.cancel()
        raise
    return run.finish()


def synthesize(
    input_node,
    reference=None,
    progress: Callable[[JobEvent], None] | None = None,
    **options,
) -> list:
    """Blocking: synthesize for ``input_node`` in a worker process and return the new nodes."""
    return wait_for(
        BackgroundSynthesis(input_node, SynthesisOptions.from_keywords(**options), reference), progress
    )
