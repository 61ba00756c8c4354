"""The label-adherence segmenter: a MONAI U-Net that segments echo images into a cache's classes.

``network`` (settings, U-Net and ``Segmenter.load``) and ``trainer``. The function below is the family's
training entry point for ``models.families``; nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A trainer for a 2D cache; ``settings`` holds the model's and the run's (``RunSettings``) together."""
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.segmenter.network import RUN_DEFAULTS, SegmenterConfig
    from EchoSynthLib.models.segmenter.trainer import SegmenterTrainer

    values, run_settings = split_settings(settings, SegmenterConfig, RUN_DEFAULTS)
    return SegmenterTrainer(data, run, SegmenterConfig.from_dict(values), device, run_settings)
