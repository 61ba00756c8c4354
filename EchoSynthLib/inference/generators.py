"""Generators: one interface over everything that turns a label map into echo images.

- ``simulator``: the training-free B-mode simulator (2D and 3D maps, no torch, no model file);
- a model package (a name from ``store.registry`` or a folder) of any family whose task is label map ->
  image (``store.families``): the family's loaded model, an ``inference.pipeline.LabelToImagePipeline``
  configured with the settings (a 2D model makes images of one plane of a 3D map).

``open_generator(settings)`` picks one; ``prepare(labels)`` cuts and checks a map before anything is
written, ``generate(labels, n, seed)`` makes ``n`` images on the prepared map's grid (image k uses
seed + k); ``generate_for_maps`` makes the images of several maps, in one batch across maps where the
generator can (``generate_many``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, make_dataclass, replace
from typing import TYPE_CHECKING, Protocol

from EchoSynthLib.data.labels import Structure, require_heart
from EchoSynthLib.data.planes import PLANES, VOLUME, slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.options import SAMPLING_OPTIONS

if TYPE_CHECKING:
    import torch

    from EchoSynthLib.simulation import SimulatorSettings

SIMULATOR = "simulator"
Progress = Callable[[float], None]
Warn = Callable[[str], None]


def step_batches(n: int, batch_size: int, progress: Callable[[int, int], None] | None):
    """(start, count, advance) for each batch of ``n`` images; ``advance(step, total)``, called by a
    sampler within a batch, reports the steps over all batches as ``progress(done, total)``."""
    batches = -(-n // batch_size)
    for index, start in enumerate(range(0, n, batch_size)):

        def advance(step: int, total: int, index: int = index) -> None:
            if progress is not None:
                progress(index * total + step, batches * total)

        yield start, min(batch_size, n - start), advance


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


LOOK_SEEDS = 7_919  # image i's look is drawn from seed LOOK_SEEDS * (seed + i): apart from its noise's
# A look: the slices (S, 1, H, W) in [-1, 1] of one image, their sector masks and the image's seed in, the
# slices in the look out.
Look = Callable[["torch.Tensor", "torch.Tensor", int], "torch.Tensor"]


def random_look(kinds: tuple[str, ...]) -> Look:
    """A look of its own for every image (``--looks``): a chain of ``kinds`` of ``augmentation.degradations``
    drawn from the image's seed (the same for every slice of a volume)."""

    def look(slices, inside, seed):
        from EchoSynthLib.augmentation.degradations import degrade

        return degrade(slices, inside, [LOOK_SEEDS * seed] * slices.shape[0], kinds=kinds)

    return look


@dataclass
class LookedGenerator:
    """A generator whose images are put through a look after they are drawn (``--looks``, an adapted
    model): black is kept outside the sector; ``what`` is added to the description."""

    inner: Generator
    look: Look
    what: str

    @property
    def description(self) -> str:
        return f"{self.inner.description}, {self.what}"

    def prepare(self, labels: Volume) -> Volume:
        return self.inner.prepare(labels)

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        images = self.inner.generate(labels, n, seed, progress)
        return [self.looked(labels, image, seed + k) for k, image in enumerate(images)]

    def generate_many(
        self, maps: Sequence[Volume], counts: Sequence[int], seed: int, progress: Progress | None = None
    ) -> list[list[Volume]]:
        """The inner generator's images of several maps (across maps where it can), each in its look."""
        drawn = generate_for_maps(self.inner, maps, counts, seed, progress)
        firsts = [seed + sum(counts[:m]) for m in range(len(maps))]
        return [
            [self.looked(labels, image, first + k) for k, image in enumerate(images)]
            for labels, images, first in zip(maps, drawn, firsts, strict=True)
        ]

    def translate(self, image: Volume, labels: Volume, seed: int) -> Volume:
        """The inner generator's translation of ``image``, in the look."""
        return self.looked(labels, self.inner.translate(image, labels, seed), seed)

    def looked(self, labels: Volume, image: Volume, seed: int) -> Volume:
        """``image`` (uint8, on the map's grid) in the look of image seed ``seed``."""
        import numpy as np
        import torch

        array = np.asarray(image.array)
        flat = torch.from_numpy(array.reshape(-1, 1, *array.shape[-2:]).astype(np.float32) / 127.5 - 1.0)
        inside = torch.from_numpy(np.asarray(labels.array).reshape(flat.shape) != Structure.BACKGROUND.label)
        looked = self.look(flat, inside, seed)
        grey = np.rint((looked.numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8).reshape(array.shape)
        return image.with_array(grey)


# A 2D model on a 3D map, plane by plane (``--plane volume``): every azimuth (ij) plane that holds heart is
# drawn by the 2D model and the planes are stacked back into a volume on the map's grid. Every plane of one
# image uses the image's seed, so each plane starts from the same noise: the texture stays put from plane
# to plane where the anatomy does (docs/BENCHMARKS.md, "3D volumes plane by plane"). Planes without heart
# stay black, as ``translate --slices`` leaves them. No maintained library draws a volume with a 2D model.
class PlaneByPlaneGenerator:
    """``inner`` (a 2D model, set to draw one ij plane) over every ij plane of a 3D map."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner

    @property
    def description(self) -> str:
        return f"{self.inner.description}, every azimuth (ij) plane of a 3D map with the image's seed"

    def prepare(self, labels: Volume) -> Volume:
        """The 3D map, checked: at least one of its ij planes is a map the 2D model takes."""
        if labels.is_2d:
            raise InputError("--plane volume draws a 3D map plane by plane; this map is 2D (drop --plane)")
        if not self._planes(labels):
            raise InputError("no ij plane of this 3D map holds the heart (LV cavity or myocardium)")
        return labels

    def _planes(self, labels: Volume) -> dict[int, Volume]:
        """k -> the prepared map of each ij plane the 2D model takes (one with heart)."""
        planes = {}
        for k in range(labels.size[2]):
            try:
                planes[k] = self.inner.prepare(slice_of(labels, k))
            except InputError:  # no heart in this plane: it stays black
                continue
        return planes

    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` uint8 volumes on the map's grid; every plane of image c uses seed + c."""
        import numpy as np

        planes = self._planes(labels)
        total, done, images = n * len(planes), 0, []
        for c in range(n):
            volume = np.zeros(labels.array.shape, np.uint8)
            for k, plane in planes.items():
                volume[k] = self.inner.generate(plane, 1, seed + c)[0].array[0]
                done += 1
                if progress is not None:
                    progress(done / total)
            images.append(labels.with_array(volume))
        return images


def generate_for_maps(
    generator: Generator,
    maps: Sequence[Volume],
    counts: Sequence[int],
    seed: int,
    progress: Progress | None = None,
) -> list[list[Volume]]:
    """``counts[m]`` images of each prepared map; image c of map m uses seed + counts[:m] + c (a run's
    numbering). A generator with ``generate_many`` draws them in batches across maps (a network call for
    several maps, not one per map); the others map by map, with the same seeds."""
    many = getattr(generator, "generate_many", None)
    if many is not None:
        return many(maps, counts, seed, progress)
    total, done, images = max(sum(counts), 1), 0, []
    for labels, count in zip(maps, counts, strict=True):

        def advance(fraction: float, done: int = done, count: int = count) -> None:
            if progress is not None:
                progress((done + fraction * count) / total)

        images.append(generator.generate(labels, count, seed + done, advance))
        done += count
    return images


class _SettingsChecks:
    """The checks every generator shares (a family checks the rest, e.g. steps against its schedule)."""

    def __post_init__(self) -> None:
        if not isinstance(self.generator, str) or not self.generator:
            raise InputError(
                f"generator must be 'simulator', a model name or a folder, got {self.generator!r}"
            )
        for option in SAMPLING_OPTIONS:
            option.check(getattr(self, option.name))


# Which generator ('simulator', a model name or folder), how it samples and on which device. The sampling
# fields are made from ``inference.options.SAMPLING_OPTIONS`` (names, types, defaults; checked there), so an
# option is declared once: ``options.py`` plus the panel that shows it.
GeneratorSettings = make_dataclass(
    "GeneratorSettings",
    [
        ("generator", str, field(default=SIMULATOR)),
        *[
            (o.name, o.kind if o.default is not None else o.kind | None, field(default=o.default))
            for o in SAMPLING_OPTIONS
        ],
        ("device", str, field(default="auto")),
    ],
    bases=(_SettingsChecks,),
    frozen=True,
    namespace={"__module__": __name__},
)
GeneratorSettings.__doc__ = (
    "Which generator and how it samples: ``generator``, the fields of ``SAMPLING_OPTIONS``, ``device``."
)


def open_generator(settings: GeneratorSettings | str, warn: Warn | None = None) -> Generator:
    """The generator of ``settings`` (or of a bare generator name), ready to generate.

    A GPU asked for where there is none falls back to the CPU with ``warn(message)``."""
    if isinstance(settings, str):
        settings = GeneratorSettings(settings)
    generator = _open(settings, warn)
    if settings.looks == "none":
        return generator
    from EchoSynthLib.augmentation.degradations import KINDS, TRAINING

    kinds = TRAINING if settings.looks == "family" else KINDS
    return LookedGenerator(
        generator, random_look(kinds), f"each image in a scanner look of its own ({len(kinds)} kinds)"
    )


def _open(settings: GeneratorSettings, warn: Warn | None) -> Generator:
    if settings.generator == SIMULATOR:
        _warn_unused(settings, (), "the training-free simulator", warn)
        return SimulatorGenerator()
    from EchoSynthLib.store.families import LABELS_TO_IMAGE, require_task
    from EchoSynthLib.store.package import read_package_header
    from EchoSynthLib.store.registry import resolve_model

    folder = resolve_model(settings.generator)
    family = require_task(read_package_header(folder)["kind"], LABELS_TO_IMAGE, f"'{settings.generator}'")
    _warn_unused(settings, family.sampling, f"a '{family.kind}' model", warn)
    if settings.plane != VOLUME:
        return family.load().build_generator(folder, settings, warn)
    if settings.slice_index is not None:
        raise InputError("--slice picks one plane; --plane volume draws every plane (drop one of them)")
    generator = family.load().build_generator(folder, replace(settings, plane=PLANES[0]), warn)
    if getattr(generator, "spatial_dims", 2) == 3:
        if warn is not None:
            warn("--plane volume is for 2D models: a 3D model draws the whole map")
        return generator
    return PlaneByPlaneGenerator(generator)


def _warn_unused(settings: GeneratorSettings, used: tuple[str, ...], what: str, warn: Warn | None) -> None:
    """Tell ``warn`` which sampling options were changed from their defaults but mean nothing to ``what``."""
    unused = [
        o.flag.lstrip("-")
        for o in SAMPLING_OPTIONS
        if o.name not in used and not o.every_generator and getattr(settings, o.name) != o.default
    ]
    if unused and warn is not None:
        warn(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by {what}")
