"""The few-step adversarial diffusion model (Tiago et al., after SynDiff and DDGAN): T = 4 large reverse
steps, each learned by a conditional GAN guided by the label map (and optionally the simulator's image).

``config`` (settings), ``process`` (the 4-step VP process on MONAI's DDPM scheduler), ``network`` (MONAI's
SPADE U-Net generator and time-conditioned discriminator), ``guides`` (the simulator guide), ``from_sdm``
(a run that starts from a trained SDM's network), ``trainer`` (resumable two-player training) and
``pipeline`` (``AdversarialModel``: a package in, images on the map's grid out, from noise or, below start
strength 1, in the last steps from the simulator's image).
Written from the papers: the public DDGAN / SynDiff code is under non-commercial terms and none of it is
used. The two functions below are the family's entry points for ``models.families``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.inference.generators import Generator, GeneratorSettings, Warn
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A trainer for a 2D cache; ``image_size`` follows the cache unless set."""
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.adversarial.config import RUN_DEFAULTS, AdversarialConfig
    from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer

    values, run_settings = split_settings(settings, AdversarialConfig, RUN_DEFAULTS)
    values.setdefault("image_size", int(CacheIndex.open(data).manifest.shape[-1]))
    return AdversarialTrainer(data, run, AdversarialConfig.from_dict(values), device, run_settings)


def build_generator(folder: str | Path, settings: GeneratorSettings, warn: Warn | None = None) -> Generator:
    """A Generator sampling the package in ``folder`` (plane and slice from ``settings``)."""
    from EchoSynthLib.models.adversarial.pipeline import AdversarialModel

    return AdversarialModel.load(folder, settings.device, warn).configure(settings)
