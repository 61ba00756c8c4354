"""The model package: a folder with ``model.safetensors``, ``config.json`` and ``MODEL_CARD.md``.

``config.json`` carries ``format_version``, ``kind`` (what network it is) and the network's settings; the
weights are safetensors (never pickles). Loading checks all of it and names what is wrong. Importing this
module does not import torch (the model manager reads package headers without it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from EchoSynthLib.data.atomic import staged_directory
from EchoSynthLib.errors import InputError

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "MODEL_CARD.md"
PROVENANCE = "provenance"


def save_package(
    folder: str | Path,
    kind: str,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    card: str,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write a package atomically (the folder appears whole or not at all). ``provenance`` (training
    data, steps) is stored under its own key beside the network settings."""
    from safetensors.torch import save_file

    folder = Path(folder)
    with staged_directory(folder) as staging:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
        # One metadata entry: safetensors writes several in a random order, and a package's SHA-256 must
        # depend on its content only.
        header = json.dumps({"format_version": FORMAT_VERSION, "kind": kind}, sort_keys=True)
        save_file(tensors, str(staging / WEIGHTS), metadata={"echosynth": header})
        document = {"format_version": FORMAT_VERSION, "kind": kind, **config, PROVENANCE: provenance or {}}
        (staging / CONFIG).write_text(json.dumps(document, indent=1))
        (staging / CARD).write_text(card)
    return folder


def read_package_header(folder: str | Path) -> dict[str, Any]:
    """The whole ``config.json`` of a package of any kind, after checking the folder holds the three files
    and the format version is one this EchoSynth reads (``kind`` is checked to be a name, not a value)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such model folder")
    missing = [name for name in (WEIGHTS, CONFIG, CARD) if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"{folder}: not an EchoSynth model package (missing {', '.join(missing)}; expected "
            f"{WEIGHTS}, {CONFIG} and {CARD})"
        )
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{folder / CONFIG}: not valid JSON ({error})") from None
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        found = config.get("format_version") if isinstance(config, dict) else None
        raise InputError(f"{folder}: model format version {found!r}; this EchoSynth reads {FORMAT_VERSION}")
    if not isinstance(config.get("kind"), str) or not config["kind"]:
        raise InputError(f"{folder / CONFIG}: no model 'kind' (what network the package holds)")
    return config


def read_package_config(folder: str | Path, kind: str) -> dict[str, Any]:
    """The network settings of a package (without format_version, kind and provenance), after checking
    the folder is a ``kind`` package."""
    config = read_package_header(folder)
    if config["kind"] != kind:
        raise InputError(f"{folder}: is a '{config['kind']}' model, expected '{kind}'")
    return {k: v for k, v in config.items() if k not in ("format_version", "kind", PROVENANCE)}


def load_weights(folder: str | Path, model: torch.nn.Module) -> torch.nn.Module:
    """Load the package's safetensors weights into ``model`` (every tensor must match by name and shape)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable safetensors file ({error})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise InputError(f"{path}: weights do not fit the network in {CONFIG} ({first})") from None
    return model
