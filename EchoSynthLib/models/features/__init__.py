"""The echo encoder: a self-supervised MONAI ResNet whose pooled features are the project's echo feature
space for evaluation (Fréchet distance, KID, precision / recall, memorisation).

``config`` (settings), ``network`` (ResNet, projection head, ``EchoEncoder.load`` and ``embed``),
``trainer`` (contrastive training on crops of real images). The function below is the family's training
entry point for ``models.families``; nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A trainer for a 2D cache; ``settings`` holds the model's and the run's (``RunSettings``) together."""
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.features.config import RUN_DEFAULTS, EncoderConfig
    from EchoSynthLib.models.features.trainer import EncoderTrainer

    values, run_settings = split_settings(settings, EncoderConfig, RUN_DEFAULTS)
    return EncoderTrainer(data, run, EncoderConfig.from_dict(values), device, run_settings)
