"""What the Generator list offers: the simulator, then the installed models (shipped with the extension,
then in the user's cache; ``EchoSynthLib.store.registry``) that can do the panel's task, then the models
the manifest lists that are not installed yet (chosen, they are downloaded first:
``EchoSynthLib.store.downloads``), plus any model folder the user picks and that can do it too. A package
of another task (a segmenter) never appears.

A choice is stored in the scene by the model's name, not its folder (the extension's folder changes with
every update); only a model the name would not find (a hand-picked folder, a cached model a bundled one of
the same name shadows) is stored as a path. ``stored_spec`` maps a path saved by an earlier version back to
its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import SIMULATOR
from EchoSynthLib.store.families import LABELS_TO_IMAGE, NOTHING_TO_PAIRS, require_task, task_of
from EchoSynthLib.store.registry import KnownModel


@dataclass(frozen=True)
class GeneratorChoice:
    """One entry of the Generator list: its label, the spec the worker opens, and for a model that is listed
    but not installed, its manifest entry (choosing it downloads it first)."""

    label: str
    spec: str
    download: KnownModel | None = None


# The panel's translate mode lists the learned label map -> image models (they translate through the
# anatomy), not the simulator.
TRANSLATION = "translation: label-guided learned models"


def task_of_mode(mode: str) -> str:
    """The generator list's task for a panel mode (synthesize, generate, translate)."""
    return {"generate": NOTHING_TO_PAIRS, "translate": TRANSLATION}.get(mode, LABELS_TO_IMAGE)


def _spec(name: str, path: Path) -> str:
    """The model's name when the name finds this very folder, else its path."""
    from EchoSynthLib.store.registry import resolve_model

    try:
        return name if resolve_model(name).resolve() == path.resolve() else str(path)
    except InputError:
        return str(path)


def generator_choices(task: str = LABELS_TO_IMAGE) -> list[GeneratorChoice]:
    """Every installed model that performs ``task`` (bundled, then cached), after the simulator for label
    map -> image, then the manifest's models of the task that are not installed; ``TRANSLATION``: the label
    map -> image models alone, with those that only translate (a model guided by the source image), which
    label map -> image leaves out."""
    from EchoSynthLib.store.registry import installed_models, read_manifest

    simulator = GeneratorChoice("Simulator (training-free, 2D and 3D)", SIMULATOR)
    choices = [simulator] if task == LABELS_TO_IMAGE else []
    wanted = LABELS_TO_IMAGE if task == TRANSLATION else task
    installed = installed_models()
    for model in installed:
        if task_of(model.kind) == wanted and (task == TRANSLATION or not model.translates_only):
            label = f"{model.name} {model.version} ({model.source}, {model.kind})"
            choices.append(GeneratorChoice(label, _spec(model.name, model.path)))
    try:
        listed = read_manifest()
    except InputError:  # a broken manifest hides nothing that is installed
        listed = []
    names = {m.name for m in installed}
    for known in listed:
        left_out = known.translates_only and task != TRANSLATION
        if known.name in names or task_of(known.kind) != wanted or left_out:
            continue
        size = f", {known.size / 1e6:.0f} MB" if known.size else ""
        label = f"{known.name} {known.version} (download{size}, {known.kind})"
        choices.append(GeneratorChoice(label, known.name, known))
        names.add(known.name)
    return choices


def stored_spec(spec: str) -> str:
    """A generator spec as the scene should keep it: a saved path that no longer exists but whose folder
    name is an installed or listed model becomes that name (scenes saved by earlier versions kept the
    extension's folder, which moves with every update)."""
    if not spec or spec == SIMULATOR or Path(spec).exists() or not Path(spec).is_absolute():
        return spec
    from EchoSynthLib.store.registry import installed_models, listed_model

    name = Path(spec).name
    known = name in {m.name for m in installed_models()} or listed_model(name) is not None
    return name if known else spec


def checked_model_folder(folder: str | Path, task: str = LABELS_TO_IMAGE) -> str:
    """A model folder picked by hand, as a generator spec; InputError if it is not a package or cannot do
    ``task`` (for example a segmenter)."""
    from EchoSynthLib.store.registry import package_summary

    summary = package_summary(folder)
    require_task(summary.kind, LABELS_TO_IMAGE if task == TRANSLATION else task, f"the folder {folder}")
    if summary.translates_only and task != TRANSLATION:
        raise InputError(f"the folder {folder} holds a model that translates images only: use Translate")
    return str(folder)
