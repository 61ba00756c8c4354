"""Settings dataclasses' JSON round trip and device choice, shared by networks, trainers and samplers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any, TypeVar

import torch

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


def pick_device(device: str | torch.device, warn: Callable[[str], None] | None = None) -> torch.device:
    """'auto' -> the GPU if there is one, else the CPU; 'gpu' means 'cuda'; anything else as given.

    A GPU asked for on a machine without one falls back to the CPU with ``warn(message)`` when ``warn``
    is given, and is an InputError otherwise."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device("cuda" if device == "gpu" else device)
    except RuntimeError:
        raise InputError(f"unknown device '{device}' (use auto, cpu, gpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        message = f"device '{device}' asked for, but no CUDA GPU is available"
        if warn is None:
            raise InputError(message)
        warn(f"{message}: running on the CPU (much slower)")
        return torch.device("cpu")
    return resolved
