"""Inference API of the 2D semantic diffusion model: a label map in, echo images with its geometry out.

``Synthesizer.load(folder)`` reads a model package; ``synthesize(labels, n, steps, sampler, seed, device)``
accepts a canonical label Volume of any size (2D, or a 3D volume and a slice index), resamples it to the
model's grid with the aspect ratio kept (as ``echosynth prepare`` does), samples, and resamples the
images back onto the input's grid, black outside the sector. With a start strength below 1 (``strength``,
or the package's ``start_strength``) image k starts from the training-free simulator's image of the map
(seed + k) noised that far along the chain, instead of from pure noise; to translate an image (``source``,
``DiffusionGenerator.translate``) it starts from that image instead (SDEdit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import require_heart
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.diffusion.samplers import check_guidance, sample, steps_from
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.sdm.config import SDMConfig
from EchoSynthLib.models.sdm.network import build_sdm
from EchoSynthLib.preprocessing.resample import Grid
from EchoSynthLib.sampling.generators import ModelGenerator, step_batches
from EchoSynthLib.sampling.grids import (
    image_back_onto,
    model_conditioning,
    require_source_on,
    start_images,
    with_sector,
)
from EchoSynthLib.store.families import SDM_KIND
from EchoSynthLib.store.package import load_weights, read_package_config

KIND = SDM_KIND


@dataclass
class Synthesizer:
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

    def check_sampling(self, steps: int, guidance_scale: float, strength: float | None = None) -> None:
        """InputError for a step count, guidance scale or start strength this model cannot sample with."""
        if not 1 <= steps <= self.diffusion.num_timesteps:
            raise InputError(f"steps must be in 1..{self.diffusion.num_timesteps}, got {steps}")
        check_guidance(guidance_scale, self.config.label_dropout)
        steps_from(steps, self.start_strength(strength))

    def start_strength(self, strength: float | None) -> float:
        """``strength``, or the package's default (``start_strength``) for None."""
        return self.config.start_strength if strength is None else strength

    def conditioning(self, labels: Volume) -> tuple[torch.Tensor, Grid]:
        """The one-hot map (1, C, S, S) in the model's classes, and the model grid it lies on."""
        size = self.config.image_size
        one_hot, grid = model_conditioning(labels, self.config.classes, (size, size))
        return torch.from_numpy(one_hot[np.newaxis]), grid

    def synthesize(
        self,
        labels: Volume | np.ndarray,
        n: int = 1,
        steps: int = 25,
        sampler: str = "dpm++sde",
        seed: int = 0,
        device: str | torch.device | None = None,
        guidance_scale: float = 1.0,
        slice_index: int | None = None,
        batch_size: int = 16,
        progress: Callable[[int, int], None] | None = None,
        plane: str = "ij",
        strength: float | None = None,
        source: Volume | None = None,
    ) -> list[Volume]:
        """``n`` uint8 images for a canonical label map, each on the map's grid (image k uses seed + k).

        A 3D map gives images of one plane (``plane``, ``slice_index``: see ``data.planes``);
        ``progress(done, total)`` counts sampler steps over all batches; ``strength``: see the module
        docstring (None: the package's default); ``source``: a 2D image on the map's grid to start from
        instead of the simulator's (translation)."""
        labels = Volume.of(labels)
        if n < 1 or batch_size < 1:
            raise InputError(f"n and batch_size must be at least 1, got {n} and {batch_size}")
        check_seed(seed, n)
        self.check_sampling(steps, guidance_scale, strength)
        strength = self.start_strength(strength)
        if device is not None:
            self.to(device)
        target = with_sector(slice_of(labels, slice_index, plane))
        seg, grid = self.conditioning(target)
        require_source_on(target, source)
        shape = (self.config.image_size,) * 2
        images: list[Volume] = []
        for start, count, advance in step_batches(n, batch_size, progress):
            batch = seg.expand(count, -1, -1, -1).to(self.device)
            init = (
                None
                if strength == 1.0
                else torch.from_numpy(start_images(target, grid, shape, seed + start, count, source))
            )
            out = sample(
                self.model,
                batch,
                self.diffusion,
                sampler=sampler,
                steps=steps,
                seed=seed + start,
                guidance_scale=guidance_scale,
                progress=advance,
                init=init,
                strength=strength,
            )
            images.extend(image_back_onto(target, image, grid) for image in out.float().cpu().numpy())
        return images


@dataclass
class DiffusionGenerator(ModelGenerator):
    """A trained 2D semantic diffusion model (``model``: a ``Synthesizer``); a 3D map gives images of one
    plane."""

    def __post_init__(self) -> None:
        if not self.description:
            model = f"model {self.model.source.name} on {self.model.device}"
            self.description = f"{model}: {self.sampler}, {self.steps} steps"
            self.description += self.start_description(self.strength)

    def prepare(self, labels: Volume) -> Volume:
        """The chosen plane (a 2D map as it is) with a sector, checked. The model's conditioning (resampled
        one-hot map) is made once, by ``generate``: a job prepares all its maps before it writes anything,
        and holding every map's conditioning until then would cost memory for nothing."""
        target = with_sector(slice_of(labels, self.slice_index, self.plane))
        require_heart(target.array)
        return target
