"""The 2D semantic diffusion model of Echo from noise: a label map in, echo images out.

``config`` (settings and size presets), ``network`` (MONAI's SPADE diffusion U-Net), ``trainer``
(resumable hybrid-loss training), ``pipeline`` (``Synthesizer``: a package in, images on the label map's
grid out). The diffusion process and samplers it uses are shared (``EchoSynthLib.diffusion``). The two
functions below are the family's entry points for ``models.families``; nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.inference.generators import Generator, GeneratorSettings, Warn
    from EchoSynthLib.training.runs import StepTrainer


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> StepTrainer:
    """A trainer for a cache; the size preset follows the cache's image size unless ``image_size`` is set.
    ``settings`` holds the model's and the run's (``RunSettings``) together, as ``--set`` gives them."""
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.sdm.config import RUN_DEFAULTS, SDMConfig
    from EchoSynthLib.models.sdm.trainer import SDMTrainer

    cache = CacheIndex.open(data)
    values, run_settings = split_settings(settings, SDMConfig, RUN_DEFAULTS)
    size = int(values.pop("image_size", cache.manifest.shape[-1]))
    return SDMTrainer(cache.path, run, SDMConfig.preset(size, **values), device, run_settings)


def build_generator(folder: str | Path, settings: GeneratorSettings, warn: Warn | None = None) -> Generator:
    """A Generator sampling the package in ``folder`` with ``settings`` (sampler, steps, guidance, plane)."""
    from EchoSynthLib.models.sdm.pipeline import Synthesizer

    return Synthesizer.load(folder, settings.device, warn).configure(settings)
