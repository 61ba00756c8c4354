"""Generators: one interface over everything that turns a label map into echo images.

- ``simulator``: the training-free B-mode simulator (2D and 3D maps, no torch, no model file);
- a model package (a name from ``models.registry`` or a folder): the 2D semantic diffusion model, which
  makes images of one plane of a 3D map.

``open_generator(settings)`` picks one; ``prepare(labels)`` cuts and checks a map before anything is
written, ``generate(labels, n, seed)`` makes ``n`` images on the prepared map's grid (image k uses
seed + k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from EchoSynthLib.data.labels import require_heart
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

if TYPE_CHECKING:
    from EchoSynthLib.sampling.synthesizer import Synthesizer
    from EchoSynthLib.simulation import SimulatorSettings

SIMULATOR = "simulator"
Progress = Callable[[float], None]
Warn = Callable[[str], None]


class Generator(Protocol):
    """Label map in, echo images with the map's geometry out."""

    description: str

    def prepare(self, labels: Volume) -> Volume:
        """The map this generator will work on (a plane of a 3D map for 2D models), checked."""

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` uint8 images of a prepared map; ``progress(fraction)`` reports the share done."""


@dataclass
class SimulatorGenerator:
    """The training-free simulator (2D and 3D)."""

    settings: SimulatorSettings | None = None
    description: str = "training-free B-mode simulator"

    def prepare(self, labels: Volume) -> Volume:
        """The map itself, once checked."""
        require_heart(labels.array)
        return labels

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` simulated images, seeds ``seed .. seed + n - 1``."""
        from EchoSynthLib.simulation import simulate_bmode

        images = []
        for index in range(n):
            images.append(simulate_bmode(labels, seed + index, self.settings))
            if progress is not None:
                progress((index + 1) / n)
        return images


@dataclass
class DiffusionGenerator:
    """A trained 2D semantic diffusion model; a 3D map gives images of one plane."""

    synthesizer: Synthesizer
    steps: int = 25
    sampler: str = "dpm++sde"
    guidance_scale: float = 1.0
    plane: str = "ij"
    slice_index: int | None = None
    description: str = field(default="")

    def __post_init__(self) -> None:
        if not self.description:
            model = f"model {self.synthesizer.source.name} on {self.synthesizer.device}"
            self.description = f"{model}: {self.sampler}, {self.steps} steps"

    def prepare(self, labels: Volume) -> Volume:
        """The chosen plane (a 2D map as it is) with a sector, checked against the model's classes."""
        from EchoSynthLib.sampling.synthesizer import with_sector

        target = with_sector(slice_of(labels, self.slice_index, self.plane))
        self.synthesizer.conditioning(target)
        return target

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` sampled images of a prepared map."""
        return self.synthesizer.synthesize(
            labels,
            n=n,
            steps=self.steps,
            sampler=self.sampler,
            seed=seed,
            guidance_scale=self.guidance_scale,
            progress=None if progress is None else (lambda done, total: progress(done / total)),
        )


@dataclass(frozen=True)
class GeneratorSettings:
    """Which generator ('simulator', a model name or folder) and how it samples."""

    generator: str = SIMULATOR
    steps: int = 25
    sampler: str = "dpm++sde"
    guidance_scale: float = 1.0
    plane: str = "ij"
    slice_index: int | None = None
    device: str = "auto"


def open_generator(settings: GeneratorSettings | str, warn: Warn | None = None) -> Generator:
    """The generator of ``settings`` (or of a bare generator name), ready to generate.

    A GPU asked for where there is none falls back to the CPU with ``warn(message)``."""
    if isinstance(settings, str):
        settings = GeneratorSettings(settings)
    if settings.generator == SIMULATOR:
        return SimulatorGenerator()
    from EchoSynthLib.diffusion.samplers import SAMPLERS
    from EchoSynthLib.models.package import read_package_header
    from EchoSynthLib.models.registry import resolve_model
    from EchoSynthLib.models.tasks import LABELS_TO_IMAGE, require_task
    from EchoSynthLib.sampling.synthesizer import Synthesizer

    if settings.sampler not in SAMPLERS:
        raise InputError(f"unknown sampler '{settings.sampler}' (known: {', '.join(SAMPLERS)})")
    folder = resolve_model(settings.generator)
    require_task(read_package_header(folder)["kind"], LABELS_TO_IMAGE, f"'{settings.generator}'")
    synthesizer = Synthesizer.load(folder, settings.device, warn)
    if not 1 <= settings.steps <= synthesizer.diffusion.num_timesteps:
        raise InputError(f"steps must be in 1..{synthesizer.diffusion.num_timesteps}, got {settings.steps}")
    return DiffusionGenerator(
        synthesizer,
        settings.steps,
        settings.sampler,
        settings.guidance_scale,
        settings.plane,
        settings.slice_index,
    )
