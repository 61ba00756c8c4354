"""What every trainer shares: settings files, per-step seeding, batches by step, checkpoints and logs.

A run folder holds ``config.json`` (fixed for the run except the keys a trainer allows to change),
``checkpoint/`` (safetensors for networks, optimizer state as plain tensors, the step; replaced whole),
and ``log.jsonl``. Every random draw of step ``s`` comes from a generator seeded with (seed, s, stream),
and batches are drawn per step too, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from EchoSynthLib.data.atomic import staged_directory, write_atomically
from EchoSynthLib.errors import InputError

Settings = TypeVar("Settings", bound="SettingsMixin")


class SettingsMixin:
    """JSON round trip for frozen settings dataclasses: unknown keys rejected, lists back to tuples."""

    @classmethod
    def from_dict(cls: type[Settings], values: dict[str, Any]) -> Settings:
        """Settings from a dict; an InputError names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown {cls.__name__} setting(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as error:
            raise InputError(f"invalid {cls.__name__} settings: {error}") from None

    def with_overrides(self: Settings, overrides: dict[str, Any]) -> Settings:
        """A copy with some settings changed."""
        return type(self).from_dict({**asdict(self), **overrides})

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) at one step."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])
    )


class StepBatches(torch.utils.data.Sampler):
    """Batch indices for steps ``start``..``stop - 1``, each drawn from a generator seeded (seed, step)."""

    def __init__(self, size: int, batch: int, seed: int, start: int, stop: int) -> None:
        self.size, self.batch, self.seed, self.start, self.stop = size, batch, seed, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            yield rng.choice(self.size, self.batch, replace=self.size < self.batch).tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def run_settings(run: Path, settings: Settings, resumable: set[str]) -> Settings:
    """The run's settings: written on the first start; on a resume only ``resumable`` keys may differ."""
    path = run / "config.json"
    if not path.is_file():
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(settings.as_dict(), indent=1)))
        return settings
    saved = type(settings).from_dict(json.loads(path.read_text())).as_dict()
    mine = settings.as_dict()
    changed = sorted(k for k in mine if mine[k] != saved[k] and k not in resumable)
    if changed:
        raise InputError(
            f"{run} was started with other settings ("
            + ", ".join(f"{k}: {saved[k]} -> {mine[k]}" for k in changed)
            + "); resume with the same settings or use a new --out"
        )
    if mine != saved:
        write_atomically(path, lambda tmp: tmp.write_text(json.dumps(mine, indent=1)))
    return settings


def save_checkpoint(run: Path, step: int, networks: dict[str, torch.nn.Module], optimizer) -> None:
    """Networks (safetensors), optimizer state and step, replacing the previous checkpoint whole."""
    from safetensors.torch import save_file

    with staged_directory(run / "checkpoint") as staging:
        for name, network in networks.items():
            state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
            save_file(state, str(staging / f"{name}.safetensors"))
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
        (staging / "state.json").write_text(json.dumps({"step": step}))


def load_checkpoint(run: Path, networks: dict[str, torch.nn.Module], optimizer, device: torch.device) -> int:
    """Restore networks and optimizer from the run's checkpoint (tensors only); returns the step."""
    from safetensors.torch import load_file

    folder = run / "checkpoint"
    try:
        for name, network in networks.items():
            network.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(device)))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
        return int(json.loads((folder / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise InputError(f"{folder}: checkpoint cannot be restored ({str(error).splitlines()[0]})") from None


def has_checkpoint(run: Path) -> bool:
    """True if the run folder holds a checkpoint to resume from."""
    return (run / "checkpoint" / "state.json").is_file()


def append_log(run: Path, record: dict[str, Any]) -> None:
    """One JSON line in ``run/log.jsonl``."""
    with open(run / "log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


def pick_device(device: str | torch.device) -> torch.device:
    """'auto' -> the GPU if there is one, else the CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
