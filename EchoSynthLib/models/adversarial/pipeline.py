"""Inference of the adversarial diffusion model: a label map in, T-step echo images with its geometry out.

``AdversarialModel.load(folder)`` reads a package; ``synthesize(labels, n, seed)`` takes a canonical label
map (2D, or a plane of a 3D map), puts it on the model's grid (aspect ratio kept, as ``prepare`` does),
draws the images in T generator steps and resamples them back onto the map's grid, black outside the
sector. Image k uses seed + k for every draw it needs (x_T, z, the posterior noises and, for a
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

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import require_heart
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion.samplers import seeded_noise, steps_from
from EchoSynthLib.diffusion.spade_terms import reused_map_terms
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.adversarial.config import SIMULATOR_GUIDE, SOURCE_GUIDE, AdversarialConfig
from EchoSynthLib.models.adversarial.network import Generator
from EchoSynthLib.models.adversarial.process import FewStepProcess, build_process
from EchoSynthLib.sampling.generators import (
    GeneratorSettings,
    ModelGenerator,
    Progress,
    image_owners,
    step_batches,
)
from EchoSynthLib.sampling.grids import image_back_onto, model_conditioning, require_source_on, with_sector
from EchoSynthLib.store.families import ADVERSARIAL
from EchoSynthLib.store.package import load_weights, read_package_config

Steps = Callable[[int, int], None]


@torch.no_grad()
def draw(
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
        return process.sample(predict, x, lambda j: noises[j], progress, start)


@dataclass
class AdversarialModel:
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
        generator = load_weights(folder, Generator(config)).eval().to(resolved)
        return cls(config, generator, build_process(config), resolved, Path(folder))

    def prepare(self, labels: Volume, plane: str = "ij", slice_index: int | None = None) -> Volume:
        """The 2D map the model works on (a plane of a 3D map), with a sector where it has none; checked."""
        target = with_sector(slice_of(Volume.of(labels), slice_index, plane))
        require_heart(target.array)
        return target

    def synthesize(
        self,
        labels: Volume | np.ndarray,
        n: int = 1,
        seed: int = 0,
        batch_size: int = 16,
        progress: Steps | None = None,
        plane: str = "ij",
        slice_index: int | None = None,
        source: Volume | None = None,
        strength: float | None = None,
    ) -> list[Volume]:
        """``n`` uint8 images following a canonical label map, each on the (prepared) map's grid.
        ``source``: the image to translate (on the map's grid): the guide of a model guided by its source
        image (which needs one), the start of the chain below strength 1 (module docstring); ``strength``:
        None for the package's default."""
        return self.synthesize_maps(
            [labels], [n], seed, batch_size, progress, plane, slice_index, [source], strength
        )[0]

    def synthesize_maps(
        self,
        maps: Sequence[Volume | np.ndarray],
        counts: Sequence[int],
        seed: int = 0,
        batch_size: int = 16,
        progress: Steps | None = None,
        plane: str = "ij",
        slice_index: int | None = None,
        sources: Sequence[Volume | None] | None = None,
        strength: float | None = None,
    ) -> list[list[Volume]]:
        """``counts[m]`` images of each map in batches that run across maps (a generator call per step for
        a batch, not per map); image c of map m is image j = counts[:m] + c of the run and uses seed + j,
        as ``synthesize`` of each map alone with its own seed. ``sources``: per map, as ``synthesize``."""
        from EchoSynthLib.models.adversarial.guides import on_grid, simulated
        from EchoSynthLib.preprocessing.prepare import image_on_grid

        owner, sources = image_owners(maps, counts, sources)  # owner[j]: the map of run image j
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        check_seed(seed, len(owner))
        strength = self.start_strength(strength)
        guide = self.config.guide
        if guide == SOURCE_GUIDE and any(source is None for source in sources):
            raise InputError(
                f"{self.source}: a model guided by the source image translates images (echosynth translate)"
            )
        size = self.config.image_size
        targets, conditions, given, model_maps = [], [], [], []
        for labels, source in zip(maps, sources, strict=True):
            target = self.prepare(labels, plane, slice_index)
            one_hot, grid = model_conditioning(target, self.config.classes, (size, size))
            require_source_on(target, source)
            simulator = guide == SIMULATOR_GUIDE or (strength < 1.0 and source is None)
            targets.append(target)
            conditions.append((torch.from_numpy(one_hot).float(), grid))
            on_model = None if source is None else image_on_grid(source, grid).reshape(1, size, size)
            given.append(None if on_model is None else torch.from_numpy(on_model))
            model_maps.append(on_grid(one_hot, self.config.classes, grid) if simulator else None)
        images: list[list[Volume]] = [[] for _ in maps]
        for start, count, advance in step_batches(len(owner), batch_size, progress):
            run = range(start, start + count)
            seg = torch.stack([conditions[owner[j]][0] for j in run]).to(self.device)
            simulated_images = [
                None if model_maps[owner[j]] is None else simulated(model_maps[owner[j]], seed + j)
                for j in run
            ]
            starts = [
                simulated_images[i] if given[owner[j]] is None else given[owner[j]] for i, j in enumerate(run)
            ]
            if guide == SOURCE_GUIDE:
                guides = torch.stack([given[owner[j]] for j in run])
            elif guide == SIMULATOR_GUIDE:
                guides = torch.stack(simulated_images)
            else:
                guides = seg.new_zeros((count, 0, size, size))
            init = None if any(x is None for x in starts) else torch.stack(starts)
            output = draw(
                self.generator,
                self.process,
                self.config,
                seg,
                guides.to(self.device),
                seed + start,
                advance,
                init=init,
                strength=strength,
            )
            for j, x in zip(run, output, strict=True):
                m = owner[j]
                images[m].append(image_back_onto(targets[m], x[0].cpu().numpy(), conditions[m][1]))
        return images

    def start_strength(self, strength: float | None) -> float:
        """``strength`` (checked), or the package's default (``start_strength``) for None."""
        chosen = self.config.start_strength if strength is None else strength
        steps_from(self.config.steps, chosen)
        return chosen


@dataclass
class AdversarialGenerator(ModelGenerator):
    """A loaded adversarial model as a ``sampling.generators`` Generator (its T steps are fixed)."""

    def __post_init__(self) -> None:
        if not self.description:
            model = self.model
            what = f"adversarial diffusion model {model.source.name} on {model.device}"
            strength = model.start_strength(self.strength)
            steps = steps_from(model.config.steps, strength)
            self.description = f"{what}: {steps} step{'s' if steps > 1 else ''}"
            self.description += self.start_description(strength)

    @classmethod
    def of(cls, model: AdversarialModel, settings: GeneratorSettings) -> AdversarialGenerator:
        strength = model.start_strength(settings.strength)
        return cls(model, plane=settings.plane, slice_index=settings.slice_index, strength=strength)

    def prepare(self, labels: Volume) -> Volume:
        """The map the model works on (see ``AdversarialModel.prepare``), checked."""
        return self.model.prepare(labels, self.plane, self.slice_index)

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` images of a prepared map."""
        return self.generate_many([labels], [n], seed, progress)[0]

    def generate_many(
        self, maps: Sequence[Volume], counts: Sequence[int], seed: int, progress: Progress | None = None
    ) -> list[list[Volume]]:
        """The images of several prepared maps in batches across maps (``synthesize_maps``)."""
        report = None if progress is None else (lambda done, total: progress(done / total))
        return self.model.synthesize_maps(maps, counts, seed, progress=report, strength=self.strength)

    def translate(self, image: Volume, labels: Volume, seed: int) -> Volume:
        """The translation of ``image`` (2D) with its prepared label map: guided by the image itself for a
        source-guided model, by the map (and its simulator image) otherwise; below strength 1 the chain
        starts from the image."""
        return self.model.synthesize(labels, n=1, seed=seed, source=image, strength=self.strength)[0]
