"""Latent diffusion, 2D and 3D (DIFF-3's second stage, and label-conditioned synthesis in latent space).

``config`` (settings), ``network`` (MONAI's SPADE or plain diffusion U-Net on the latents), ``trainer``
(stored posteriors re-drawn every step, exact resume), ``pipeline`` (``LatentModel``: ``synthesize`` a label
map, ``generate_pairs`` from nothing), ``cleanup`` (decoded label maps). Two families share the folder:
``latent`` (label map -> image; the entry points below) and ``latent-pairs`` (nothing -> image + labels;
``pairs``). Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.inference.generators import Generator, GeneratorSettings, Warn
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(
    data: str | Path, run: str | Path, settings: dict[str, Any], device: str, conditioned: bool = True
) -> StepTrainer:
    """A trainer for a cache (2D or 3D, as the autoencoder named by ``--set autoencoder=...``)."""
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.latent.config import RUN_DEFAULTS, LatentConfig
    from EchoSynthLib.models.latent.trainer import LatentTrainer

    values, run_settings = split_settings(settings, LatentConfig, RUN_DEFAULTS)
    config = LatentConfig.from_dict({**values, "conditioned": conditioned})
    return LatentTrainer(data, run, config, device, run_settings)


def build_generator(folder: str | Path, settings: GeneratorSettings, warn: Warn | None = None) -> Generator:
    """A Generator sampling the label-conditioned package in ``folder`` with ``settings``."""
    from EchoSynthLib.models.latent.pipeline import LatentModel
    from EchoSynthLib.store.families import LATENT

    return LatentModel.load(folder, settings.device, warn, kind=LATENT.kind).configure(settings)
