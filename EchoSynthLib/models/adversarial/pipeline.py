"""Inference of the adversarial diffusion model: a label map in, T-step echo images with its geometry out.

``AdversarialModel.load(folder)`` reads a package; it is a ``inference.pipeline.LabelToImagePipeline``
(``synthesize(labels, n, seed)``: the map on the model's grid, images back on the map's grid, black
outside the sector) whose denoising call runs the T generator steps (``denoise``).
Image k uses seed + k for every draw it needs (x_T, z, the posterior noises and, for a
simulator-guided model or a start from the simulator, the simulator's image). Below start strength 1
(``strength``, or the package's ``start_strength``) the chain starts from the simulator's image of the map
(a translation: from its source image) drawn into x^(k), k = round(strength * T), and only k steps run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.samplers import seeded_noise, steps_from
from EchoSynthLib.diffusion.spade_terms import reused_map_terms
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.pipeline import Batch, Conditioned, LabelToImagePipeline, Sampling
from EchoSynthLib.models.adversarial.config import SIMULATOR_GUIDE, SOURCE_GUIDE, AdversarialConfig
from EchoSynthLib.models.adversarial.guides import on_grid, simulated
from EchoSynthLib.models.adversarial.network import GanGenerator
from EchoSynthLib.models.adversarial.process import FewStepProcess, build_process
from EchoSynthLib.store.families import ADVERSARIAL
from EchoSynthLib.store.package import load_weights, read_package_config

Steps = Callable[[int, int], None]


@torch.no_grad()
def denoise(
    generator: torch.nn.Module,
    process: FewStepProcess,
    config: AdversarialConfig,
    seg: torch.Tensor,
    guides: torch.Tensor,
    seed: int,
    progress: Steps | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
    """Images (B, 1, H, W) in [-1, 1] for one-hot maps ``seg`` and image guides; image b draws x_T, then
    z and the posterior noise of each step, from its own generator seeded seed + b. Below ``strength`` 1
    the chain starts at x^(k) drawn from ``init`` (B, 1, H, W) with that x_T as noise (module docstring)."""
    generators = [torch.Generator().manual_seed(seed + b) for b in range(seg.shape[0])]
    shape = (seg.shape[0], 1, *seg.shape[2:])
    z_shape = (seg.shape[0], config.noise_channels, *seg.shape[2:])
    device = seg.device
    x = seeded_noise(shape, generators, device)
    start = steps_from(process.steps, strength)
    if start < process.steps:
        if init is None:
            raise InputError("a start strength below 1 needs an image to start from")
        x = process.noisy(init.to(device), torch.full((shape[0],), start - 1, dtype=torch.long), x)
    noises: dict[int, torch.Tensor] = {}

    def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        z = seeded_noise(z_shape, generators, device)
        noises[int(t[0])] = seeded_noise(shape, generators, device)
        return generator(x_t, t, z, guides, seg).float()

    with reused_map_terms(generator):
        return process.denoise(predict, x, lambda j: noises[j], progress, start)


@dataclass
class AdversarialModel(LabelToImagePipeline):
    """A loaded adversarial diffusion model (EMA generator) ready to sample."""

    config: AdversarialConfig
    generator: torch.nn.Module
    process: FewStepProcess
    device: torch.device
    source: Path

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str | torch.device = "auto",
        warn: Callable[[str], None] | None = None,
    ) -> AdversarialModel:
        """Load an ``adversarial2d`` package (a folder, or the name of an installed one; anything else is an
        InputError naming what it is)."""
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder)
        config = AdversarialConfig.from_dict(read_package_config(folder, ADVERSARIAL.kind))
        resolved = pick_device(device, warn)
        generator = load_weights(folder, GanGenerator(config)).eval().to(resolved)
        return cls(config, generator, build_process(config), resolved, Path(folder))

    @property
    def what(self) -> str:
        return "adversarial diffusion model"

    def describe_steps(self, sampling: Sampling) -> str:
        """Its T steps are fixed: those that run from the start strength."""
        steps = steps_from(self.config.steps, sampling.strength)
        return f"{steps} step{'s' if steps > 1 else ''}"

    def require_sources(self, sources: Sequence[Volume | None]) -> None:
        if self.config.guide == SOURCE_GUIDE and any(source is None for source in sources):
            raise InputError(
                f"{self.source}: a model guided by the source image translates images (echosynth translate)"
            )

    def simulated(self, item: Conditioned, seed: int) -> np.ndarray:
        """The simulator's image of the map as the model trained with it: simulated on the model's grid."""
        return simulated(on_grid(item.one_hot, self.config.classes, item.grid), seed).numpy()

    def denoise_batch(self, batch: Batch) -> torch.Tensor:
        """Guided by the map, and by the image to translate (source guide) or the simulator's image
        (simulator guide); below strength 1 the chain starts from ``batch.starts()``."""
        seg = batch.seg().to(self.device)
        if self.config.guide == SOURCE_GUIDE:
            guides = torch.from_numpy(np.stack([item.source for item in batch.items]))
        elif self.config.guide == SIMULATOR_GUIDE:
            guides = torch.from_numpy(np.stack([batch.simulated(b) for b in range(batch.count)]))
        else:
            guides = seg.new_zeros((batch.count, 0, *self.image_shape))
        return denoise(
            self.generator,
            self.process,
            self.config,
            seg,
            guides.to(self.device),
            batch.seed,
            batch.progress,
            init=batch.starts(),
            strength=batch.sampling.strength,
        )
