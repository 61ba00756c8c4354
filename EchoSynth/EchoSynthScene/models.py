"""What the Generator list offers: the simulator, then the installed models (shipped with the extension,
then in the user's cache; ``EchoSynthLib.models.registry``) that can do the panel's task, plus any model
folder the user picks and that can do it too. A package of another task (a segmenter) never appears."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from EchoSynthLib.errors import InputError
from EchoSynthLib.models.families import LABELS_TO_IMAGE, NOTHING_TO_PAIRS, require_task, task_of
from EchoSynthLib.sampling.generators import SIMULATOR


@dataclass(frozen=True)
class GeneratorChoice:
    """One entry of the Generator list: its label, and the spec the worker opens."""

    label: str
    spec: str


# The panel's translate mode lists the learned label map -> image models (they translate through the
# anatomy), not the simulator.
TRANSLATION = "translation: label-guided learned models"


def task_of_mode(mode: str) -> str:
    """The generator list's task for a panel mode (synthesize, generate, translate)."""
    return {"generate": NOTHING_TO_PAIRS, "translate": TRANSLATION}.get(mode, LABELS_TO_IMAGE)


def generator_choices(task: str = LABELS_TO_IMAGE) -> list[GeneratorChoice]:
    """Every installed model that performs ``task`` (bundled, then cached), after the simulator for label
    map -> image; ``TRANSLATION``: the label map -> image models alone, with those that only translate (a
    model guided by the source image), which label map -> image leaves out."""
    from EchoSynthLib.models.registry import installed_models

    simulator = GeneratorChoice("Simulator (training-free, 2D and 3D)", SIMULATOR)
    choices = [simulator] if task == LABELS_TO_IMAGE else []
    wanted = LABELS_TO_IMAGE if task == TRANSLATION else task
    for model in installed_models():
        if task_of(model.kind) == wanted and (task == TRANSLATION or not model.translates_only):
            label = f"{model.name} {model.version} ({model.source}, {model.kind})"
            choices.append(GeneratorChoice(label, str(model.path)))
    return choices


def checked_model_folder(folder: str | Path, task: str = LABELS_TO_IMAGE) -> str:
    """A model folder picked by hand, as a generator spec; InputError if it is not a package or cannot do
    ``task`` (for example a segmenter)."""
    from EchoSynthLib.models.registry import package_summary

    summary = package_summary(folder)
    require_task(summary.kind, LABELS_TO_IMAGE if task == TRANSLATION else task, f"the folder {folder}")
    if summary.translates_only and task != TRANSLATION:
        raise InputError(f"the folder {folder} holds a model that translates images only: use Translate")
    return str(folder)
