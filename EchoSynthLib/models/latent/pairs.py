"""Entry points of the ``latent-pairs`` family (DIFF-3: nothing in, image + label map out); the code is
the latent family's (this folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.models.latent.pipeline import LatentModel
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A paired-generation trainer (the autoencoder must encode image + label channels)."""
    from EchoSynthLib.models.latent import build_trainer as build

    return build(data, run, settings, device, conditioned=False)


def open_model(folder: str | Path, device: str = "auto", warn=None) -> LatentModel:
    """The paired-generation package in ``folder`` (a folder or an installed name), loaded."""
    from EchoSynthLib.models.latent.pipeline import LatentModel
    from EchoSynthLib.store.families import LATENT_PAIRS

    return LatentModel.load(folder, device, warn, kind=LATENT_PAIRS.kind)
