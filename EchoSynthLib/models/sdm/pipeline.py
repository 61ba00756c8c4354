"""Inference of the 2D semantic diffusion model: a label map in, echo images with its geometry out.

``Synthesizer.load(folder)`` reads a model package; everything around the network (options, preparing the
map, its model grid, start images below strength 1, batches, images back on the map's grid) is the shared
``inference.pipeline.LabelToImagePipeline``; this module supplies the one denoising call (the shared
``diffusion.samplers.denoise``). With a start strength below 1 (``strength``, or the package's
``start_strength``) image k starts from the training-free simulator's image of the map (seed + k), or the
image to translate, noised that far along the chain, instead of from pure noise (SDEdit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.diffusion.samplers import check_guidance, check_sampler, denoise
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.pipeline import Batch, LabelToImagePipeline, Sampling
from EchoSynthLib.models.sdm.config import SDMConfig
from EchoSynthLib.models.sdm.network import build_sdm
from EchoSynthLib.store.families import SDM_KIND
from EchoSynthLib.store.package import load_weights, read_package_config

KIND = SDM_KIND


@dataclass
class Synthesizer(LabelToImagePipeline):
    """A loaded semantic diffusion model (EMA weights) ready to sample."""

    config: SDMConfig
    model: torch.nn.Module
    device: torch.device
    source: Path
    diffusion: GaussianDiffusion

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str | torch.device = "auto",
        warn: Callable[[str], None] | None = None,
    ) -> Synthesizer:
        """Load a model package (a folder, or the name of an installed one); anything but an EchoSynth
        ``sdm2d`` package is an InputError naming what it is. A GPU asked for where there is none falls back
        to the CPU with ``warn`` (see ``pick_device``)."""
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder)
        settings = read_package_config(folder, KIND)
        config = SDMConfig.from_dict(settings)
        model = load_weights(folder, build_sdm(config)).eval()
        resolved = pick_device(device, warn)
        diffusion = GaussianDiffusion(config.timesteps, config.schedule)
        return cls(config, model.to(resolved), resolved, Path(folder), diffusion)

    def to(self, device: str | torch.device) -> Synthesizer:
        """Move the network to ``device`` ('auto', 'cpu', 'cuda', ...)."""
        self.device = pick_device(device)
        self.model.to(self.device)
        return self

    @property
    def what(self) -> str:
        return "model"

    def check(self, sampling: Sampling) -> None:
        if not 1 <= sampling.steps <= self.diffusion.num_timesteps:
            raise InputError(f"steps must be in 1..{self.diffusion.num_timesteps}, got {sampling.steps}")
        check_sampler(sampling.sampler)
        check_guidance(sampling.guidance_scale, self.config.label_dropout)

    def denoise_batch(self, batch: Batch) -> torch.Tensor:
        sampling = batch.sampling
        return denoise(
            self.model,
            batch.seg().to(self.device),
            self.diffusion,
            sampler=sampling.sampler,
            steps=sampling.steps,
            seed=batch.seed,
            guidance_scale=sampling.guidance_scale,
            progress=batch.progress,
            init=batch.starts(),
            strength=sampling.strength,
        )
