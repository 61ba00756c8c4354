"""Generators: one interface over everything that turns a label map into echo images.

- ``simulator``: the training-free B-mode simulator (2D and 3D maps, no torch, no model file);
- a model package (a name from ``models.registry`` or a folder) of any family whose task is label map ->
  image (``models.families``); the family builds its own Generator (e.g. the 2D semantic diffusion
  model, which makes images of one plane of a 3D map).

``open_generator(settings)`` picks one; ``prepare(labels)`` cuts and checks a map before anything is
written, ``generate(labels, n, seed)`` makes ``n`` images on the prepared map's grid (image k uses
seed + k).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from EchoSynthLib.checks import check_count, check_number
from EchoSynthLib.data.labels import require_heart
from EchoSynthLib.data.planes import PLANES
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.diffusion import DEFAULT_SAMPLER, SAMPLERS
from EchoSynthLib.errors import InputError

if TYPE_CHECKING:
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


@dataclass(frozen=True)
class GeneratorSettings:
    """Which generator ('simulator', a model name or folder) and how it samples."""

    generator: str = SIMULATOR
    steps: int = 25
    sampler: str = DEFAULT_SAMPLER
    guidance_scale: float = 1.0
    plane: str = "ij"
    slice_index: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        """The checks every generator shares (a family checks the rest, e.g. steps against its schedule)."""
        if not isinstance(self.generator, str) or not self.generator:
            raise InputError(
                f"generator must be 'simulator', a model name or a folder, got {self.generator!r}"
            )
        if self.sampler not in SAMPLERS:
            raise InputError(f"unknown sampler '{self.sampler}' (known: {', '.join(SAMPLERS)})")
        if self.plane not in PLANES:
            raise InputError(f"unknown plane '{self.plane}' (known: {', '.join(PLANES)})")
        check_count(self.steps, "steps", 1)
        check_number(self.guidance_scale, "guidance scale", minimum=0.0)
        if self.slice_index is not None:
            check_count(self.slice_index, "slice index", 0)


def open_generator(settings: GeneratorSettings | str, warn: Warn | None = None) -> Generator:
    """The generator of ``settings`` (or of a bare generator name), ready to generate.

    A GPU asked for where there is none falls back to the CPU with ``warn(message)``."""
    if isinstance(settings, str):
        settings = GeneratorSettings(settings)
    if settings.generator == SIMULATOR:
        return SimulatorGenerator()
    from EchoSynthLib.models.families import LABELS_TO_IMAGE, require_task
    from EchoSynthLib.models.package import read_package_header
    from EchoSynthLib.models.registry import resolve_model

    folder = resolve_model(settings.generator)
    family = require_task(read_package_header(folder)["kind"], LABELS_TO_IMAGE, f"'{settings.generator}'")
    return family.load().build_generator(folder, settings, warn)
