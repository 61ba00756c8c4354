"""Adapt to my images: a model in the look of the user's scanner, through a worker process.

The scanner's unlabelled images come from a scalar volume in the scene: a sequence browser's proxy (every
frame of its sequence) or one volume (a 2D image, or a stack whose slices along K are frames, as a cine
loaded as a volume is). Each 2D image is written to an 'adapt' job folder (colour as grey levels); the
worker fits a look for the base model (``EchoSynthLib.adaptation.adapt``) and writes a model package; on
success the package is installed in the user's model cache under a name no other model has
(``EchoSynthLib.store.registry.install_from_folder``), where the Generator list finds it. The scene is
only read; a cancelled or failed run installs nothing, and its job folder (the fit's work with it) is
removed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import slicer

from EchoSynthLib.adaptation.adapt import DEFAULT_BASE, DEFAULT_TRANSLATOR, MINIMUM_IMAGES
from EchoSynthLib.data.io import write_image
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER
from EchoSynthLib.inference.generators import SIMULATOR
from EchoSynthLib.jobs.launcher import JobEvent
from EchoSynthLib.jobs.spec import ADAPT, ADAPT_DEFAULTS, JobSpec, SynthesisOptions, read_model
from EchoSynthScene.sequences import sequence_of
from EchoSynthScene.synthesis import INPUTS_DIR, BackgroundSynthesis, SceneJob, wait_for

ENCODER = DEFAULT_ENCODER  # the fit compares images in this encoder's features: it must be installed
TRANSLATOR = DEFAULT_TRANSLATOR  # the way back starts from this translator: installed when asked for
SETTINGS = (*ADAPT_DEFAULTS, "seed", "device")  # what an adaptation takes besides the node, name and base
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 80
_BT601 = np.array([0.299, 0.587, 0.114])  # grey levels of RGB frames, as the library reads RGB files


def _frame_nodes(node) -> list:
    """The volume nodes that hold the images: every frame of the sequence ``node`` shows, else ``node``."""
    sequence = sequence_of(node)
    if sequence is None:
        return [node]
    frames = sequence.sequence
    return [frames.GetNthDataNode(index) for index in range(frames.GetNumberOfDataNodes())]


def _images_in(node) -> int:
    """The 2D images of one volume node: one for a single slice (along any axis), else its slices along K."""
    if node is None or not node.IsA("vtkMRMLVolumeNode") or node.GetImageData() is None:
        return 0
    dimensions = node.GetImageData().GetDimensions()
    return 1 if 1 in dimensions else dimensions[2]


def image_count(node) -> int:
    """How many 2D images of the scanner ``node`` gives (each frame of a sequence, each slice of a stack)."""
    return sum(_images_in(frame) for frame in _frame_nodes(node))


def _source_name(node) -> str:
    sequence = sequence_of(node)
    return (sequence.sequence if sequence is not None else node).GetName()


def adaptation_problem(node, base: str = DEFAULT_BASE) -> str | None:
    """Why Adapt cannot run yet (a sentence for the panel), or None."""
    if node is None or not node.IsA("vtkMRMLScalarVolumeNode") or node.IsA("vtkMRMLLabelMapVolumeNode"):
        return "Select your scanner's images: an echo volume, or a sequence of frames"
    if node.GetImageData() is None:
        return f"The volume '{node.GetName()}' has no voxels"
    count = image_count(node)
    if count < MINIMUM_IMAGES:
        return (
            f"'{_source_name(node)}' gives {count} 2D image(s); adapting needs at least {MINIMUM_IMAGES} "
            "(a sequence of frames, or a volume of slices; a few hundred are better)"
        )
    if not base:
        return "Choose the base model to adapt"
    return None


def model_name(text: str) -> str:
    """``text`` as a model name: runs of characters other than letters, digits, '.', '_' and '-' become one
    '-' (InputError when nothing usable is left)."""
    name = _NOT_IN_NAME.sub("-", str(text).strip()).strip("-._")[:_MAX_NAME].rstrip("-._")
    if not name:
        raise InputError(f"{text!r} gives no usable model name (use letters, digits, '.', '_' and '-')")
    return name


def default_model_name(node) -> str:
    """A name for the model adapted to ``node``'s images: "<its name>-look" (or its sequence's name)."""
    try:
        return model_name(f"{_source_name(node)}-look")
    except InputError:  # a name of other characters only
        return "scanner-look"


def unique_model_name(name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ...: the first that no model uses (installed, bundled or in the
    cache, listed for download) and that names nothing in the cache yet (case-insensitively, for the file
    systems of Windows and macOS)."""
    from EchoSynthLib.store.registry import bundled_models_dir, read_manifest, user_cache_dir

    name = model_name(name)
    taken = set()
    for folder in (user_cache_dir(), bundled_models_dir()):  # every model installed, and anything else there
        if folder.is_dir():
            taken |= {entry.name.lower() for entry in folder.iterdir()}
    with contextlib.suppress(InputError):  # a broken manifest lists nothing
        taken |= {m.name.lower() for m in read_manifest()}
    candidate, number = name, 2
    while candidate.lower() in taken:
        candidate, number = f"{name}-{number}", number + 1
    return candidate


def adapt_needs(base: str):
    """The Python packages an adaptation needs (``EchoSynthScene.dependencies.Needs``): torch and the
    model requirements for the echo encoder, and whatever sampling the base model needs."""
    from EchoSynthScene.dependencies import needs_for

    # The encoder needs the model requirements; any base but the simulator needs those and its sampler's.
    return needs_for(ENCODER if base == SIMULATOR else base)


def _grey(array: np.ndarray) -> np.ndarray:
    """One grey level per voxel: RGB(A) frames by luminance, other multi-component ones by their mean."""
    if array.ndim == 3:
        return array
    mixed = array[..., :3] @ _BT601 if array.shape[-1] in (3, 4) else array.mean(axis=-1)
    if np.issubdtype(array.dtype, np.integer):
        mixed = np.rint(mixed)
    return mixed.astype(array.dtype)


def _planes(node) -> list[Volume]:
    """The 2D images of one volume node (``_images_in``), with its in-plane spacing."""
    if not _images_in(node):
        return []
    array = _grey(np.array(slicer.util.arrayFromVolume(node)))  # (k, j, i), copied
    spacing = node.GetSpacing()  # (i, j, k)
    if array.shape[0] == 1 or 1 not in array.shape:
        return [Volume.from_2d(plane, spacing[:2]) for plane in array]
    if array.shape[1] == 1:
        return [Volume.from_2d(array[:, 0, :], (spacing[0], spacing[2]))]
    return [Volume.from_2d(array[:, :, 0], (spacing[1], spacing[2]))]


def check_settings(settings: dict) -> dict:
    """The adaptation's settings (``SETTINGS``), checked; an unknown name is an InputError listing them."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise InputError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    from EchoSynthLib.adaptation.adapt import AdaptSettings

    AdaptSettings(Path(), Path(), **settings)  # their ranges, before any work
    return dict(settings)


def prepare_adaptation(node, folder: str | Path, base: str = DEFAULT_BASE, **settings) -> SceneJob:
    """Write every 2D image of ``node`` (every frame of a sequence, every slice of a stack) and an 'adapt'
    job for ``base`` into ``folder``. Too few images, or a node that holds none, is a ValueError that says
    so; bad settings are an InputError."""
    settings = check_settings(settings)
    problem = adaptation_problem(node, base)
    if problem is not None:
        raise ValueError(problem)
    folder = Path(folder)
    (folder / INPUTS_DIR).mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for frame in _frame_nodes(node):
        for image in _planes(frame):
            names.append(f"{INPUTS_DIR}/image{len(names):05d}.nrrd")
            write_image(image, folder / names[-1])
    options = SynthesisOptions(
        generator=base, seed=settings.get("seed", 0), device=settings.get("device", "auto")
    )
    fit = {name: settings[name] for name in ADAPT_DEFAULTS if name in settings}
    spec = JobSpec(
        task=ADAPT, inputs=tuple(names), generator=base, seed=options.seed, device=options.device, **fit
    )
    spec.write(folder)
    return SceneJob(folder, node, options)


def install_adapted(folder: str | Path, name: str):
    """Install the model package a finished 'adapt' job in ``folder`` wrote into the user's model cache,
    as ``unique_model_name(name)``; its summary (``EchoSynthLib.store.registry.InstalledModel``)."""
    from EchoSynthLib.store.registry import install_from_folder, package_summary

    return package_summary(install_from_folder(read_model(folder), unique_model_name(name)), "cache")


class BackgroundAdaptation(BackgroundSynthesis):
    """One adaptation in a worker process, for a panel that polls it from a timer; ``finish()`` installs
    the model in the user's cache and returns its summary (its ``name`` is what the Generator list shows).
    ``cancel()`` kills the worker: nothing is installed, and the job folder, the fit's work in it, is
    removed."""

    def __init__(self, node, name: str | None = None, base: str = DEFAULT_BASE, **settings) -> None:
        self.name = model_name(name) if name else default_model_name(node)
        self.base = base
        self._start(lambda folder: prepare_adaptation(node, folder, base, **settings))

    def _import(self):
        return install_adapted(self.job.folder, self.name)


def adapt(
    node,
    name: str | None = None,
    base: str = DEFAULT_BASE,
    progress: Callable[[JobEvent], None] | None = None,
    **settings,
):
    """Blocking: adapt ``base`` to the images of ``node`` and install the model (``BackgroundAdaptation``);
    its summary."""
    return wait_for(BackgroundAdaptation(node, name, base, **settings), progress)
