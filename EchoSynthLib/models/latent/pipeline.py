"""Inference of the latent diffusion models, 2D and 3D.

``LatentModel.load(folder)`` reads a package (the EMA denoiser and the autoencoder it was trained on);
a label-conditioned model is a ``inference.pipeline.LabelToImagePipeline`` (``synthesize(labels, n, ...)``:
images that follow a label map, on the map's own grid) whose denoising call runs in the autoencoder's
latent space; ``generate_pairs(n, ...)`` makes image + label map pairs from nothing (DIFF-3) on the
training grid, probe at the top. ``denoise`` is the reverse process both use, and the trainers' sample
grids too. Below a start strength of 1
(``strength``, or the package's ``start_strength``), a label-conditioned model starts image k from the
autoencoder's latent (posterior mean) of the training-free simulator's image of the map (seed + k), or of
the image to translate (``source``), noised that far along the chain (SDEdit, as the semantic diffusion
model does in pixels): the simulator draws the layout, the model re-draws the texture.

MONAI's ``LatentDiffusionInferer`` is not used for sampling: it runs its own scheduler loop (no progress
callback for a cancellable Slicer job, one random generator for a batch where each EchoSynth image has its
own seed, and no DPM-Solver++); its pieces (MONAI's schedulers, the autoencoder's decode and the latent
scale factor) are used here directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.processes import NoiseProcess
from EchoSynthLib.diffusion.samplers import (
    check_guidance,
    seeded_noise,
    with_and_without_map,
)
from EchoSynthLib.diffusion.schedules import BetaSchedule
from EchoSynthLib.diffusion.spade_terms import reused_map_terms
from EchoSynthLib.engine.device import bf16_autocast, pick_device, uses_bf16
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import step_batches
from EchoSynthLib.inference.pipeline import Batch, LabelToImagePipeline, Sampling
from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
from EchoSynthLib.models.autoencoder.network import build_autoencoder
from EchoSynthLib.models.latent.cleanup import clean_labels
from EchoSynthLib.models.latent.config import LatentConfig
from EchoSynthLib.models.latent.network import Denoiser
from EchoSynthLib.store.package import load_weights, read_package_header

AUTOENCODER = "autoencoder"  # the package component holding the autoencoder's weights
Steps = Callable[[int, int], None]


# The autoencoder's batch on a CPU (measured, 128x128 latent-camus128, 2 threads: decode 0.032 s per image
# at 4, 0.058 s at 16; encode 0.015 s and 0.028 s): sampling batches 16 images, the autoencoder runs 4 at a
# time. GPUs take the whole batch.
CPU_AUTOENCODER_BATCH = 4


def noise_process(config: LatentConfig) -> NoiseProcess:
    """The noise process of ``config``."""
    schedule = BetaSchedule(config.timesteps, config.schedule, config.beta_start, config.beta_end)
    return NoiseProcess(config.process, schedule)


@torch.no_grad()
def denoise(
    denoiser: torch.nn.Module,
    process: NoiseProcess,
    config: LatentConfig,
    count: int,
    seg: torch.Tensor | None,
    *,
    sampler: str,
    steps: int,
    seed: int,
    guidance_scale: float = 1.0,
    progress: Steps | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    bf16: bool = False,
) -> torch.Tensor:
    """``count`` latents (scaled back to the autoencoder's range); latent b uses seed + b. ``seg``: the
    one-hot map (1 or count, C, ...) of a conditioned model; ``guidance_scale`` != 1 mixes in the
    prediction without it (classifier-free guidance; the model must have been trained with label
    dropout). ``init``: latents in the autoencoder's range to start from, noised ``strength`` of the
    way. ``bf16``: the network runs under bf16 autocast (the samplers' arithmetic stays float32)."""
    device = next(denoiser.parameters()).device
    generators = [torch.Generator().manual_seed(int(seed) + b) for b in range(count)]
    noise = seeded_noise((count, *config.latent_shape), generators, device)
    if seg is not None:
        seg = seg.to(device).expand(count, *seg.shape[1:])

    def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        steps_in = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        with bf16_autocast(device, bf16):
            if seg is None or guidance_scale == 1.0:
                return denoiser(x, steps_in, seg).float()
            conditional, unconditional = with_and_without_map(denoiser, x, steps_in, seg)
        return unconditional.float() + guidance_scale * (conditional.float() - unconditional.float())

    predict = process.clipped(predict, config.latent_clip)
    with reused_map_terms(denoiser):
        start = None if init is None else init.to(device) * config.scale_factor
        latents = process.denoise(predict, noise, sampler, steps, generators, progress, start, strength)
    return latents / config.scale_factor


@dataclass
class LatentModel(LabelToImagePipeline):
    """A loaded latent diffusion model (EMA denoiser + autoencoder) ready to sample."""

    config: LatentConfig
    denoiser: torch.nn.Module
    autoencoder: torch.nn.Module
    device: torch.device
    source: Path
    process: NoiseProcess = field(init=False)
    bf16: bool = field(init=False)  # the networks run under bf16 autocast (GPUs: ``uses_bf16``)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.process = noise_process(self.config)
        self.bf16 = uses_bf16(self.device, self.config.mixed_precision)  # on GPUs, as in training

    @classmethod
    def load(
        cls,
        folder: str | Path,
        device: str | torch.device = "auto",
        warn: Callable[[str], None] | None = None,
        kind: str | None = None,
    ) -> LatentModel:
        """Load a latent model package (of ``kind`` if given: the task asked for); anything else is an
        InputError. A GPU asked for where there is none falls back to the CPU with ``warn``."""
        from EchoSynthLib.store.families import LATENT_KINDS
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder)
        header = read_package_header(folder)
        wanted = (kind,) if kind else LATENT_KINDS
        if header["kind"] not in wanted:
            raise InputError(f"{folder}: is a '{header['kind']}' model, expected {' or '.join(wanted)}")
        config = LatentConfig.from_dict(header["settings"])
        autoencoder_config = AutoencoderConfig.from_dict(config.autoencoder_settings)
        denoiser = load_weights(folder, Denoiser(config)).eval()
        autoencoder = load_weights(folder, build_autoencoder(autoencoder_config), AUTOENCODER).eval()
        resolved = pick_device(device, warn)
        return cls(config, denoiser.to(resolved), autoencoder.to(resolved), resolved, Path(folder))

    def sampler_for(self, requested: str | None) -> str:
        """The sampler to use for ``requested``: None, or the option's default where this model cannot use
        it (a rectified-flow model has only ``rflow``), means the model's own default."""
        from EchoSynthLib.inference.options import sampling_option

        default = sampling_option("sampler").default
        if requested is None or (requested == default and requested not in self.process.samplers):
            return self.process.samplers[0]
        return requested

    @property
    def spatial_dims(self) -> int:
        return self.config.spatial_dims

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.config.image_shape

    @property
    def what(self) -> str:
        return f"{self.config.spatial_dims}D latent model"

    def resolve(self, **given: object) -> Sampling:
        """As the base's, with the sampler as ``sampler_for`` picks it."""
        chosen = given.get("sampler") or self.options.get("sampler")
        return super().resolve(**{**given, "sampler": self.sampler_for(chosen)})

    def check(self, sampling: Sampling) -> None:
        self.process.check(sampling.sampler, sampling.steps)
        check_guidance(sampling.guidance_scale, self.config.label_dropout if self.config.conditioned else 0.0)
        if sampling.strength < 1.0 and not self.config.conditioned:
            raise InputError(f"{self.source}: a paired-generation model starts from noise only (strength 1)")

    def prepare(
        self, labels: Volume | np.ndarray, plane: str | None = None, slice_index: int | None = None
    ) -> Volume:
        """As the base's; a paired-generation model takes no label map."""
        if not self.config.conditioned:
            raise InputError(f"{self.source}: a paired-generation model takes no label map (use generate)")
        return super().prepare(labels, plane, slice_index)

    def denoise_batch(self, batch: Batch) -> torch.Tensor:
        starts = batch.starts()
        latents = self._latents(batch.count, batch.seg(), batch.seed, batch.sampling, batch.progress, starts)
        return self.decoded(latents)[:, :1].clamp(-1.0, 1.0)

    def _latents(
        self,
        count: int,
        seg: torch.Tensor | None,
        seed: int,
        sampling: Sampling,
        progress: Steps | None,
        starts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``count`` latents (``denoise``); below strength 1 from the autoencoder's latents of ``starts``."""
        return denoise(
            self.denoiser,
            self.process,
            self.config,
            count,
            seg,
            sampler=sampling.sampler,
            steps=sampling.steps,
            seed=seed,
            guidance_scale=sampling.guidance_scale,
            progress=progress,
            init=None if starts is None else self.encoded(starts.numpy()),
            strength=sampling.strength,
            bf16=self.bf16,
        )

    def encoded(self, images: np.ndarray) -> torch.Tensor:
        """The autoencoder's posterior means of images (B, 1, ...) in [-1, 1]: latents to start from."""
        inputs = torch.from_numpy(images).to(self.device)
        with torch.no_grad(), bf16_autocast(self.device, self.bf16):
            return torch.cat([self.autoencoder.encode(part)[0].float() for part in self._parts(inputs)])

    def decoded(self, latents: torch.Tensor) -> torch.Tensor:
        """The autoencoder's images (B, C, ...) of latents, on the CPU."""
        with torch.no_grad(), bf16_autocast(self.device, self.bf16):
            return torch.cat([self.autoencoder.decode(part).float().cpu() for part in self._parts(latents)])

    def _parts(self, batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A batch in the pieces the autoencoder runs fastest on: on a CPU, at most ``CPU_AUTOENCODER_BATCH``
        images (its full-resolution activations of 16 images outgrow the caches: 2x slower per image)."""
        return batch.split(CPU_AUTOENCODER_BATCH) if self.device.type == "cpu" else (batch,)

    def generate_pairs(
        self,
        n: int = 1,
        steps: int = 25,
        sampler: str | None = None,
        seed: int = 0,
        batch_size: int = 16,
        progress: Steps | None = None,
    ) -> list[tuple[Volume, Volume]]:
        """``n`` (uint8 image, canonical label map) pairs on the training grid (its spacing, origin 0, probe
        at the top); the labels are the decoded logits' argmax, cleaned (``cleanup``), and the image is
        black outside the sector."""
        if self.config.conditioned:
            raise InputError(f"{self.source}: a label-conditioned model needs a label map (use synthesize)")
        if n < 1 or batch_size < 1:
            raise InputError(f"n and batch_size must be at least 1, got {n} and {batch_size}")
        check_seed(seed, n)
        sampling = self.resolve(steps=steps, sampler=sampler, guidance_scale=1.0, strength=1.0)
        layout = self.config.classes
        pairs = []
        for start, count, advance in step_batches(n, batch_size, progress):
            latents = self._latents(count, None, seed + start, sampling, advance)
            for item in self.decoded(latents).numpy():
                labels = clean_labels(layout.to_canonical(layout.channel_values[item[1:].argmax(0)]))
                grey = np.rint((np.clip(item[0], -1, 1) + 1.0) * 127.5)
                if layout.has(Structure.SECTOR):
                    grey = np.where(labels == Structure.BACKGROUND.label, 0, grey)
                shape = labels.shape if labels.ndim == 3 else (1, *labels.shape)
                image = Volume(grey.reshape(shape).astype(np.uint8), self.config.spacing)
                pairs.append((image, image.with_array(labels.reshape(shape))))
        return pairs
