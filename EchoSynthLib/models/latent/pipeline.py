"""Inference of the latent diffusion models, 2D and 3D.

``LatentModel.load(folder)`` reads a package (the EMA denoiser and the autoencoder it was trained on);
``synthesize(labels, n, ...)`` makes images that follow a label map, on the map's own grid (resampled to
the model's grid and back as the semantic diffusion model does, ``sampling.grids``); ``generate_pairs(n,
...)`` makes image + label map pairs from nothing (DIFF-3) on the training grid, probe at the top.
``draw`` is the sampling loop both use, and the trainers' sample grids too. Below a start strength of 1
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import Structure, require_heart
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.processes import NoiseProcess
from EchoSynthLib.diffusion.samplers import (
    check_guidance,
    seeded_noise,
    steps_from,
    with_and_without_map,
)
from EchoSynthLib.diffusion.schedules import BetaSchedule
from EchoSynthLib.diffusion.spade_terms import reused_map_terms
from EchoSynthLib.engine.device import bf16_autocast, pick_device, uses_bf16
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
from EchoSynthLib.models.autoencoder.network import build_autoencoder
from EchoSynthLib.models.latent.cleanup import clean_labels
from EchoSynthLib.models.latent.config import LatentConfig
from EchoSynthLib.models.latent.network import Denoiser
from EchoSynthLib.sampling.generators import image_owners, step_batches
from EchoSynthLib.sampling.grids import (
    image_back_onto,
    model_conditioning,
    require_source_on,
    start_images,
    with_sector,
)
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
def draw(
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
        latents = process.integrate(predict, noise, sampler, steps, generators, progress, start, strength)
    return latents / config.scale_factor


@dataclass
class LatentModel:
    """A loaded latent diffusion model (EMA denoiser + autoencoder) ready to sample."""

    config: LatentConfig
    denoiser: torch.nn.Module
    autoencoder: torch.nn.Module
    device: torch.device
    source: Path
    process: NoiseProcess = field(init=False)
    bf16: bool = field(init=False)  # the networks run under bf16 autocast (GPUs: ``uses_bf16``)

    def __post_init__(self) -> None:
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
        from EchoSynthLib.sampling.options import sampling_option

        default = sampling_option("sampler").default
        if requested is None or (requested == default and requested not in self.process.samplers):
            return self.process.samplers[0]
        return requested

    def check_sampling(
        self, sampler: str, steps: int, guidance_scale: float, strength: float | None = None
    ) -> None:
        """InputError for settings this model cannot sample with."""
        self.process.check(sampler, steps)
        check_guidance(guidance_scale, self.config.label_dropout if self.config.conditioned else 0.0)
        chosen = self.start_strength(strength)
        steps_from(steps, chosen)
        if chosen < 1.0 and not self.config.conditioned:
            raise InputError(f"{self.source}: a paired-generation model starts from noise only (strength 1)")

    def start_strength(self, strength: float | None) -> float:
        """``strength``, or the package's default (``start_strength``) for None."""
        return self.config.start_strength if strength is None else strength

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

    def _batches(
        self,
        n: int,
        seg: torch.Tensor | Callable[[int, int], torch.Tensor] | None,
        sampler: str,
        steps: int,
        seed: int,
        guidance_scale: float,
        batch_size: int,
        progress: Steps | None,
        strength: float = 1.0,
        starts: Callable[[int, int], np.ndarray] | None = None,
    ):
        """Decoded outputs (B, C, ...) batch by batch; progress counts sampler steps over all batches.
        ``seg``: one map for every image, or ``seg(first, count)`` the maps of images first .. first +
        count - 1 (batches across maps). Below ``strength`` 1, ``starts(seed, count)`` gives the images
        (count, 1, ...) to start from."""
        if n < 1 or batch_size < 1:
            raise InputError(f"n and batch_size must be at least 1, got {n} and {batch_size}")
        check_seed(seed, n)
        self.check_sampling(sampler, steps, guidance_scale, strength)
        for start, count, advance in step_batches(n, batch_size, progress):
            init = None if strength == 1.0 else self.encoded(starts(seed + start, count))
            latents = draw(
                self.denoiser,
                self.process,
                self.config,
                count,
                seg(start, count) if callable(seg) else seg,
                sampler=sampler,
                steps=steps,
                seed=seed + start,
                guidance_scale=guidance_scale,
                progress=advance,
                init=init,
                strength=strength,
                bf16=self.bf16,
            )
            yield self.decoded(latents)

    def prepare(self, labels: Volume, plane: str = "ij", slice_index: int | None = None) -> Volume:
        """The map a conditioned model works on: a 2D model takes a plane of a 3D map, a 3D model needs a
        3D map; a sector is added where the map has none. Checked (heart present, known labels)."""
        if not self.config.conditioned:
            raise InputError(f"{self.source}: a paired-generation model takes no label map (use generate)")
        labels = Volume.of(labels)
        if self.config.spatial_dims == 3 and labels.is_2d:
            raise InputError(f"{self.source}: a 3D model needs a 3D label map, got a 2D one")
        target = slice_of(labels, slice_index, plane) if self.config.spatial_dims == 2 else labels
        target = with_sector(target)
        require_heart(target.array)  # the resampled one-hot map is made once, by ``synthesize``
        return target

    def synthesize(
        self,
        labels: Volume | np.ndarray,
        n: int = 1,
        steps: int = 25,
        sampler: str | None = None,
        seed: int = 0,
        guidance_scale: float = 1.0,
        batch_size: int = 16,
        progress: Steps | None = None,
        plane: str = "ij",
        slice_index: int | None = None,
        strength: float | None = None,
        source: Volume | None = None,
    ) -> list[Volume]:
        """``n`` uint8 images following a canonical label map, each on the (prepared) map's grid; image k
        uses seed + k. ``sampler``: see ``sampler_for``; ``strength`` and ``source`` (an image on the
        prepared map's grid to start from instead of the simulator's: a translation): see the module
        docstring."""
        return self.synthesize_maps(
            [labels],
            [n],
            steps=steps,
            sampler=sampler,
            seed=seed,
            guidance_scale=guidance_scale,
            batch_size=batch_size,
            progress=progress,
            plane=plane,
            slice_index=slice_index,
            strength=strength,
            sources=[source],
        )[0]

    def synthesize_maps(
        self,
        maps: Sequence[Volume | np.ndarray],
        counts: Sequence[int],
        steps: int = 25,
        sampler: str | None = None,
        seed: int = 0,
        guidance_scale: float = 1.0,
        batch_size: int = 16,
        progress: Steps | None = None,
        plane: str = "ij",
        slice_index: int | None = None,
        strength: float | None = None,
        sources: Sequence[Volume | None] | None = None,
    ) -> list[list[Volume]]:
        """``counts[m]`` images of each map, drawn in batches that run across maps (a network call per
        batch, not per map); image c of map m is image j = counts[:m] + c of the run and uses seed + j,
        as ``synthesize`` of each map alone would with its own seed. ``sources``: per map, an image to
        start from (a translation) or None."""
        owner, sources = image_owners(maps, counts, sources)  # owner[j]: the map of run image j
        targets = [self.prepare(labels, plane, slice_index) for labels in maps]
        for target, source in zip(targets, sources, strict=True):
            require_source_on(target, source)
        shape = self.config.image_shape
        conditions = [model_conditioning(target, self.config.classes, shape) for target in targets]

        def seg(first: int, count: int) -> torch.Tensor:
            return torch.from_numpy(np.stack([conditions[owner[j]][0] for j in range(first, first + count)]))

        def starts(first_seed: int, count: int) -> np.ndarray:
            run = range(first_seed - seed, first_seed - seed + count)
            return np.concatenate([start_of(owner[j], seed + j) for j in run])

        def start_of(m: int, image_seed: int) -> np.ndarray:
            return start_images(targets[m], conditions[m][1], shape, image_seed, 1, sources[m])

        images: list[list[Volume]] = [[] for _ in targets]
        chosen, sampler = self.start_strength(strength), self.sampler_for(sampler)
        batches = self._batches(
            len(owner), seg, sampler, steps, seed, guidance_scale, batch_size, progress, chosen, starts
        )
        run = iter(owner)
        for output in batches:
            for image in output:
                m = next(run)
                grid = conditions[m][1]
                images[m].append(image_back_onto(targets[m], image[0].clamp(-1, 1).numpy(), grid))
        return images

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
        layout = self.config.classes
        pairs = []
        sampler = self.sampler_for(sampler)
        for output in self._batches(n, None, sampler, steps, seed, 1.0, batch_size, progress):
            for item in output.numpy():
                labels = clean_labels(layout.to_canonical(layout.channel_values[item[1:].argmax(0)]))
                grey = np.rint((np.clip(item[0], -1, 1) + 1.0) * 127.5)
                if layout.has(Structure.SECTOR):
                    grey = np.where(labels == Structure.BACKGROUND.label, 0, grey)
                shape = labels.shape if labels.ndim == 3 else (1, *labels.shape)
                image = Volume(grey.reshape(shape).astype(np.uint8), self.config.spacing)
                pairs.append((image, image.with_array(labels.reshape(shape))))
        return pairs
