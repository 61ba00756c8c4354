"""The device a network runs on: 'auto', 'cpu', 'gpu' or a torch device name, with a CPU fallback."""

from __future__ import annotations

from collections.abc import Callable

import torch

from EchoSynthLib.errors import InputError


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


def uses_bf16(device: torch.device, mixed_precision: bool) -> bool:
    """Whether a model with ``mixed_precision`` runs in bf16 on ``device``: on CUDA GPUs only (training and
    sampling alike); on a CPU bf16 is slower than float32."""
    return mixed_precision and device.type == "cuda"


def bf16_autocast(device: torch.device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled`` (see ``uses_bf16``), a no-op context otherwise."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
