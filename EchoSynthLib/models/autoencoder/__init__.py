"""The autoencoder of the latent diffusion families (DIFF-3's first stage): MONAI's ``AutoencoderKL`` with a
``PatchDiscriminator``, 2D or 3D, on the image alone or on the image and its label channels together.

``config`` (settings), ``network`` (builders and ``Autoencoder.load`` with ``encode`` / ``decode``),
``trainer`` (two phases as DIFF-3: reconstruction, label and KL losses first, then the adversarial and
SSIM terms). The function below is the family's training entry point; nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A trainer for a 2D or 3D cache; ``settings`` holds the model's and the run's together."""
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.autoencoder.config import RUN_DEFAULTS, AutoencoderConfig
    from EchoSynthLib.models.autoencoder.trainer import AutoencoderTrainer

    values, run_settings = split_settings(settings, AutoencoderConfig, RUN_DEFAULTS)
    return AutoencoderTrainer(data, run, AutoencoderConfig.from_dict(values), device, run_settings)
