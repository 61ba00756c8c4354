"""First use of a model that is listed in the manifest but not installed: its licence accepted once, then
downloaded with progress (and Cancel), checked against its SHA-256 and installed in the user cache.

The licence of every listed model is shown before its first download (CAMUS-trained weights carry CC
BY-NC-SA 4.0 terms); an acceptance is remembered per model and licence text in ``accepted-licences.json``
beside the cache's model folders, so a changed licence is asked again. Scripts accept up front
(``--accept-licence``, ``ECHOSYNTH_ACCEPT_LICENCE=1``, or ``accept=True``); nothing is downloaded without an
acceptance. A download cut, refused by the server, damaged or cancelled installs nothing
(``registry.install_from_url`` stages it and checks the hash and the package before the folder appears).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.errors import InputError
from EchoSynthLib.store import registry
from EchoSynthLib.store.registry import KnownModel, Progress

ACCEPT_ENV = "ECHOSYNTH_ACCEPT_LICENCE"
ACCEPTED_FILE = "accepted-licences.json"
Ask = Callable[[KnownModel], bool]  # show the licence, return True when the user accepts it


class DownloadCancelled(InputError):
    """The user cancelled a download (raised from a progress callback); nothing was installed."""


def _record(cache_dir: str | os.PathLike | None) -> Path:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else registry.user_cache_dir()
    return cache.parent / f"{cache.name}-{ACCEPTED_FILE}"  # beside the models, never a model folder


def _key(model: KnownModel) -> str:
    return hashlib.sha256(model.license.encode()).hexdigest()


def _accepted(cache_dir: str | os.PathLike | None) -> dict[str, str]:
    try:
        document = json.loads(_record(cache_dir).read_text())
    except (OSError, ValueError):  # none yet, or damaged: ask again
        return {}
    return {k: v for k, v in document.items() if isinstance(v, str)} if isinstance(document, dict) else {}


def licence_accepted(model: KnownModel, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when this model's licence (this text) was accepted before."""
    return _accepted(cache_dir).get(model.name) == _key(model)


def accept_licence(model: KnownModel, cache_dir: str | os.PathLike | None = None) -> None:
    """Remember that the user accepted this model's licence."""
    accepted = _accepted(cache_dir) | {model.name: _key(model)}
    path = _record(cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(accepted, indent=1, sort_keys=True) + "\n"
    write_atomically(path, lambda staging: staging.write_text(text))


def accepted_by_environment() -> bool:
    """True when ``ECHOSYNTH_ACCEPT_LICENCE`` says yes (1, true, yes)."""
    return os.environ.get(ACCEPT_ENV, "").strip().lower() in ("1", "true", "yes")


def licence_prompt(model: KnownModel) -> str:
    """What a user is shown before a model's first download."""
    size = f", {model.size / 1e6:.0f} MB" if model.size else ""
    return (
        f"EchoSynth needs the model '{model.name}' {model.version} ({model.kind}{size}), which is not "
        f"installed. It is distributed under these terms:\n\n  {model.license}\n\n"
        f"Download it from {model.url} and accept these terms?"
    )


def download_model(
    model: KnownModel,
    *,
    accept: bool = False,
    ask: Ask | None = None,
    progress: Progress | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Install a listed model on first use: its licence accepted (before, now by ``accept``, or by ``ask``),
    then downloaded (``progress(done, total)``; raising ``DownloadCancelled`` there cancels) and installed.
    The installed folder."""
    if not licence_accepted(model, cache_dir):
        if not (accept or accepted_by_environment() or (ask is not None and ask(model))):
            raise InputError(
                f"the model '{model.name}' is not installed and its licence was not accepted "
                f"({model.license}); to download it, accept the licence: answer yes when asked, or pass "
                f"--accept-licence (or set {ACCEPT_ENV}=1)"
            )
        accept_licence(model, cache_dir)
    return registry.install_from_url(model, cache_dir, progress)


@contextmanager
def downloads_on_first_use(
    *, accept: bool, ask: Ask | None, progress: Callable[[KnownModel], Progress] | None = None
) -> Iterator[None]:
    """Within the block, a model name that is listed but not installed (``registry.resolve_model``) is
    downloaded (``download_model``; ``progress(model)`` makes each download's progress callback); the
    earlier behaviour comes back after it."""

    def handle(model: KnownModel, cache_dir: str | os.PathLike | None) -> Path:
        return download_model(
            model, accept=accept, ask=ask, progress=progress(model) if progress else None, cache_dir=cache_dir
        )

    previous = registry.set_first_use(handle)
    try:
        yield
    finally:
        registry.set_first_use(previous)
