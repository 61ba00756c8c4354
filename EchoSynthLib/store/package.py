"""The model package (format 2): a folder with ``config.json``, ``MODEL_CARD.md`` and one safetensors file
per named network component (``model.safetensors`` for the one-network families; a latent model also holds
``autoencoder.safetensors``, an adversarial one ``discriminator.safetensors``).

``config.json``::

    {"format_version": 2, "kind": "sdm2d", "task": "label map -> image",
     "components": [{"name": "model", "file": "model.safetensors", "sha256": "..."}],
     "settings": {...network and process settings...}, "classes": {"1": "lv_cavity", ...},
     "settings_sha256": "...", "grid": {"image_size": 64}, "provenance": {...training data, steps...}}

Weights are safetensors, never pickles, and each component's SHA-256 is checked before it is loaded. The
settings (the classes the weights were trained with among them) carry a SHA-256 of their own: an edited
class table (two structures swapped still parse as a valid layout) or setting is refused. A
format-1 package (``model.safetensors`` and the settings at the top level of ``config.json``) is refused
with the command that converts it (``echosynth models upgrade FOLDER``, cheap: the weights are kept).
Importing this module does not import torch (the model manager reads package headers without it).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from EchoSynthLib.data.atomic import sha256_of, staged_directory
from EchoSynthLib.errors import InputError

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 2
CONFIG = "config.json"
CARD = "MODEL_CARD.md"
PROVENANCE = "provenance"
DEFAULT_COMPONENT = "model"
SETTINGS_SHA256 = "settings_sha256"
WEIGHTS = f"{DEFAULT_COMPONENT}.safetensors"  # the one-network families' component (and format 1's file)


def _task(kind: str) -> str:
    from EchoSynthLib.store.families import task_of

    task = task_of(kind)
    if task is None:
        raise InputError(f"unknown model kind '{kind}': no model family of this EchoSynth makes it")
    return task


def save_package(
    folder: str | Path,
    kind: str,
    config: dict[str, Any],
    state: Mapping[str, torch.Tensor] | None,
    card: str,
    provenance: dict[str, Any] | None = None,
    *,
    components: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    folders: Mapping[str, Path] | None = None,
) -> Path:
    """Write a package atomically (the folder appears whole or not at all): ``components`` (name -> state
    dict), or ``state`` as the one component ``model``; ``config`` holds the settings; ``provenance``
    (training data, steps, licence) is stored under its own key; ``folders`` (name -> a package folder)
    are copied in, whole, under those names (a package that brings another, e.g. an adapted model's way
    back)."""
    import shutil

    from safetensors.torch import save_file

    parts = dict(components) if components is not None else {DEFAULT_COMPONENT: state}
    if not parts or any(not name.isidentifier() for name in parts):
        raise InputError(f"a package needs components named like identifiers, got {list(parts)}")
    task = _task(kind)
    folder = Path(folder)
    if folder.is_dir() and any(folder.iterdir()) and not is_package_folder(folder):
        raise InputError(f"{folder}: is a folder that holds no model package; refusing to replace it")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    with staged_directory(folder) as staging:
        listed = []
        for name, part in parts.items():
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in part.items()}
            path = staging / f"{name}.safetensors"
            # One metadata entry: safetensors writes several in a random order, and a package's SHA-256
            # must depend on its content only.
            header = json.dumps({"format_version": FORMAT_VERSION, "kind": kind}, sort_keys=True)
            save_file(tensors, str(path), metadata={"echosynth": header})
            listed.append({"name": name, "file": path.name, "sha256": sha256_of(path)})
        document = _document(kind, task, listed, config, provenance or {})
        (staging / CONFIG).write_text(json.dumps(document, indent=1))
        (staging / CARD).write_text(card)
        for name, source in (folders or {}).items():
            if not is_package_folder(source):
                raise InputError(f"{source}: holds no model package to bring into {folder}")
            shutil.copytree(source, staging / name)
    return folder


def settings_sha256(settings: Mapping[str, Any]) -> str:
    """The SHA-256 of settings as canonical JSON (sorted keys, no spaces; tuples as lists)."""
    import hashlib

    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _document(
    kind: str, task: str, components: list[dict], settings: dict[str, Any], provenance: dict[str, Any]
) -> dict[str, Any]:
    grid = {k: settings[k] for k in ("image_size", "spatial_dims") if k in settings}
    return {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "task": task,
        "components": components,
        "settings": settings,
        SETTINGS_SHA256: settings_sha256(settings),
        "classes": settings.get("classes", {}),
        "grid": grid,
        PROVENANCE: provenance,
    }


def _read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder")
    if not (folder / CONFIG).is_file():
        raise InputError(f"{folder}: not an EchoSynth model package (missing {CONFIG})")
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{folder / CONFIG}: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise InputError(f"{folder / CONFIG}: not an EchoSynth package configuration")
    return config


def is_package_folder(folder: str | Path) -> bool:
    """True for a folder that holds an EchoSynth package of any format (what installs may replace)."""
    try:
        config = _read_config(Path(folder))
    except InputError:
        return False
    return config.get("format_version") in (1, FORMAT_VERSION) and isinstance(config.get("kind"), str)


def read_package_header(folder: str | Path) -> dict[str, Any]:
    """The whole ``config.json`` of a package, after checking the folder holds it, the card and every
    listed component, that the format is 2 and that kind and task belong to a known model family."""
    folder = Path(folder)
    config = _read_config(folder)
    absent = ([] if any(folder.glob("*.safetensors")) else [WEIGHTS]) + (
        [] if (folder / CARD).is_file() else [CARD]
    )
    if absent:
        raise InputError(f"{folder}: not an EchoSynth model package (missing {', '.join(absent)})")
    found = config.get("format_version")
    if found == 1:
        raise InputError(
            f"{folder}: a model package of format 1; convert it with 'echosynth models upgrade {folder}'"
        )
    if found != FORMAT_VERSION:
        raise InputError(f"{folder}: model format version {found!r}; this EchoSynth reads {FORMAT_VERSION}")
    kind, task = config.get("kind"), config.get("task")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{folder / CONFIG}: no model 'kind' (what network the package holds)")
    if task != _task(kind):
        raise InputError(
            f"{folder / CONFIG}: task {task!r} is not what a '{kind}' model does ({_task(kind)})"
        )
    components = config.get("components")
    if not isinstance(components, list) or not components:
        raise InputError(f"{folder / CONFIG}: no 'components' (the weight files of the package)")
    missing = []
    for entry in components:
        if not isinstance(entry, dict) or not {"name", "file", "sha256"} <= set(entry):
            raise InputError(f"{folder / CONFIG}: a component needs a name, a file and a sha256, got {entry}")
        if Path(entry["file"]).name != entry["file"] or not (folder / entry["file"]).is_file():
            missing.append(str(entry["file"]))
    if missing:
        raise InputError(f"{folder}: not an EchoSynth model package (missing {', '.join(missing)})")
    if not isinstance(config.get("settings"), dict):
        raise InputError(f"{folder / CONFIG}: no 'settings'")
    recorded = config.get(SETTINGS_SHA256)  # packages saved before it was recorded have none
    edited = recorded is not None and recorded != settings_sha256(config["settings"])
    if edited or config.get("classes", {}) != config["settings"].get("classes", {}):
        raise InputError(
            f"{folder / CONFIG}: the settings (or classes) differ from those the weights were saved with; "
            "the file was edited or damaged: reinstall the model"
        )
    return config


def component_path(folder: str | Path, header: dict[str, Any], name: str = DEFAULT_COMPONENT) -> Path:
    """The file of component ``name``, after checking its SHA-256 against ``config.json``."""
    entry = next((c for c in header["components"] if c["name"] == name), None)
    if entry is None:
        known = ", ".join(c["name"] for c in header["components"])
        raise InputError(f"{folder}: the package has no component '{name}' (it has: {known})")
    path = Path(folder) / entry["file"]
    if sha256_of(path) != entry["sha256"]:
        raise InputError(f"{path}: SHA-256 differs from {CONFIG}; the file was changed or damaged")
    return path


def package_identity(folder: str | Path) -> str:
    """A package's identity: its components' SHA-256 prefixes (changes when any weights change)."""
    return "-".join(c["sha256"][:12] for c in read_package_header(folder)["components"])


def read_package_config(folder: str | Path, kind: str) -> dict[str, Any]:
    """The settings of a ``kind`` package (the family config's)."""
    from EchoSynthLib.engine.settings import RUN_SETTING_NAMES

    header = read_package_header(folder)
    if header["kind"] != kind:
        raise InputError(f"{folder}: is a '{header['kind']}' model, expected '{kind}'")
    # Packages written before run settings were split off carried them too; they say nothing of the model.
    return {k: v for k, v in header["settings"].items() if k not in RUN_SETTING_NAMES}


def read_weights(folder: str | Path, component: str = DEFAULT_COMPONENT) -> dict[str, torch.Tensor]:
    """A component's tensors by name (SHA-256 checked; safetensors only, never a pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = component_path(folder, read_package_header(folder), component)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None


def load_weights(
    folder: str | Path, model: torch.nn.Module, component: str = DEFAULT_COMPONENT
) -> torch.nn.Module:
    """Load a component's safetensors weights into ``model`` (SHA-256 checked; every tensor must match by
    name and shape)."""
    state = read_weights(folder, component)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        message = f"{folder}: the {component} weights do not fit the network in {CONFIG} ({first})"
        raise InputError(message) from None
    return model


def upgrade_package(folder: str | Path) -> Path:
    """Convert a format-1 package in place to format 2: every ``*.safetensors`` file becomes the component
    of its name (``model``, and e.g. ``discriminator`` or ``autoencoder``), every other file in the folder
    (the card, a user's notes) is kept as it is, and only ``config.json`` is rewritten; the folder is
    replaced whole. A format-2 package is left as it is."""
    folder = Path(folder)
    config = _read_config(folder)
    if config.get("format_version") == FORMAT_VERSION:
        read_package_header(folder)
        return folder
    if config.get("format_version") != 1 or not isinstance(config.get("kind"), str):
        raise InputError(f"{folder}: not a format-1 EchoSynth model package")
    for name in (WEIGHTS, CARD):
        if not (folder / name).is_file():
            raise InputError(f"{folder}: not a format-1 EchoSynth model package (missing {name})")
    kind = config["kind"]
    settings = {k: v for k, v in config.items() if k not in ("format_version", "kind", PROVENANCE)}
    provenance = config.get(PROVENANCE) if isinstance(config.get(PROVENANCE), dict) else {}
    with staged_directory(folder) as staging:
        for item in folder.iterdir():
            if item.name != CONFIG:
                copy = shutil.copytree if item.is_dir() else shutil.copy2
                copy(item, staging / item.name)
        weights = sorted(p for p in staging.glob("*.safetensors") if p.stem.isidentifier())
        listed = [{"name": p.stem, "file": p.name, "sha256": sha256_of(p)} for p in weights]
        document = _document(kind, _task(kind), listed, settings, provenance)
        (staging / CONFIG).write_text(json.dumps(document, indent=1))
    return folder
