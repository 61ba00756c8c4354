"""One label-to-image pipeline under the families: what every label-conditioned model does around its
network, written once (diffusers' pipeline pattern, with EchoSynth's family folders kept).

A family subclasses ``LabelToImagePipeline`` and supplies loading (its ``load``), its package's defaults
and checks (``defaults``, ``check``), what its model calls itself (``what``) and one denoising call
(``denoise_batch``: one-hot maps on the model's grid in, images in [-1, 1] on that grid out). The base owns,
once:

- the sampling options: None means the pipeline's configured value, then the package's default;
  resolved and checked in one place (``resolve``; the ranges are ``inference.options``');
- preparing a map (a plane of a 3D map for a 2D model, a sector where it has none, a heart);
- the model-grid conditioning and an image to translate on that grid;
- below strength 1, the images sampling starts from (the simulator's of the map, or the image to
  translate);
- batches that run across maps with one seed per image (image j of a run uses seed + j);
- the images back on each map's own grid, black outside the sector;
- the description, and the ``Generator`` contract (``prepare``, ``generate``, ``generate_many``,
  ``translate``) with the options it was configured with (``configure``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.labels import ClassLayout, require_heart
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import Progress, step_batches
from EchoSynthLib.inference.grids import (
    image_back_onto,
    model_conditioning,
    require_source_on,
    start_images,
    with_sector,
)
from EchoSynthLib.inference.options import SAMPLING_OPTIONS, sampling_option

if TYPE_CHECKING:
    import torch

    from EchoSynthLib.inference.generators import GeneratorSettings
    from EchoSynthLib.preprocessing.resample import Grid

Steps = Callable[[int, int], None]
# The options a pipeline samples with (``looks`` is applied to every generator's images, above this).
SAMPLING_NAMES = tuple(o.name for o in SAMPLING_OPTIONS if not o.every_generator)


@dataclass(frozen=True)
class Sampling:
    """The options of one call, resolved and checked (``slice_index`` None: the middle slice)."""

    steps: int
    sampler: str
    guidance_scale: float
    plane: str
    slice_index: int | None
    strength: float


@dataclass
class Conditioned:
    """A prepared map on the model's grid: the map, its one-hot (C, *shape), that grid, and the image to
    translate on it ((1, *shape) in [-1, 1]; None when drawing from the map alone)."""

    target: Volume
    one_hot: np.ndarray
    grid: Grid
    source: np.ndarray | None


@dataclass
class Batch:
    """The images one network pass draws: image b is of ``items[b]`` and uses seed ``seed + b``;
    ``progress(step, total)`` is the sampler's progress within the batch."""

    items: list[Conditioned]
    seed: int
    sampling: Sampling
    progress: Steps | None
    simulate: Callable[[Conditioned, int], np.ndarray]
    _simulated: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.items)

    def seg(self) -> torch.Tensor:
        """The one-hot maps (B, C, *shape), float32 on the CPU."""
        import torch

        return torch.from_numpy(np.stack([item.one_hot for item in self.items])).float()

    def simulated(self, b: int) -> np.ndarray:
        """The training-free simulator's image of image b's map ((1, *shape), [-1, 1]; made once)."""
        if b not in self._simulated:
            self._simulated[b] = self.simulate(self.items[b], self.seed + b)
        return self._simulated[b]

    def starts(self) -> torch.Tensor | None:
        """Below strength 1, the images (B, 1, *shape) sampling starts from: the image to translate where
        there is one, the simulator's image of the map otherwise; None at strength 1 (pure noise)."""
        import torch

        if self.sampling.strength == 1.0:
            return None
        images = [
            self.simulated(b) if item.source is None else item.source for b, item in enumerate(self.items)
        ]
        return torch.from_numpy(np.stack(images).astype(np.float32))


class LabelToImagePipeline:
    """A loaded label-conditioned model: label maps in, images on their grids out (module docstring).

    A family's subclass is a dataclass with ``config`` (its settings: ``classes``, ``image_size``,
    ``start_strength``), ``source`` (the package folder) and ``device``, and supplies ``what``, ``check``
    and ``denoise_batch`` (and overrides the rest where it differs)."""

    config: Any
    source: Path
    device: Any
    spatial_dims: int = 2
    # The configured values (``configure``), set per instance by ``__post_init__``.
    options: dict[str, Any]

    def __post_init__(self) -> None:
        self.options = {}

    # --- what a family supplies -------------------------------------------------------------------------
    @property
    def classes(self) -> ClassLayout:
        """The model's class layout (its one-hot channels): its config's."""
        return self.config.classes

    @property
    def image_shape(self) -> tuple[int, ...]:
        """The model's grid: (rows, cols) of its config's square ``image_size``, or (slices, rows, cols) for a
        3D model."""
        return (self.config.image_size, self.config.image_size)

    @property
    def what(self) -> str:
        """What the model is, for descriptions ("2D latent model")."""
        raise NotImplementedError

    def defaults(self) -> dict[str, Any]:
        """The package's own defaults: its start strength (the options' defaults fill the rest)."""
        return {"strength": self.config.start_strength}

    def check(self, sampling: Sampling) -> None:
        """InputError for options this model cannot sample with (beyond the options' own ranges)."""

    def denoise_batch(self, batch: Batch) -> torch.Tensor:
        """The images (B, 1, *image_shape) of a batch, in [-1, 1] (values outside are clipped later)."""
        raise NotImplementedError

    def simulated(self, item: Conditioned, seed: int) -> np.ndarray:
        """The simulator's image of a map on the model's grid, (1, *shape) in [-1, 1]."""
        return start_images(item.target, item.grid, self.image_shape, seed, 1)[0]

    def describe_steps(self, sampling: Sampling) -> str:
        """The description's account of the sampling ("dpm++sde, 25 steps")."""
        return f"{sampling.sampler}, {sampling.steps} steps"

    # --- options ----------------------------------------------------------------------------------------
    def configure(self, settings: GeneratorSettings) -> LabelToImagePipeline:
        """Sample with ``settings``' options from now on (checked now, before anything is written)."""
        self.options = {name: getattr(settings, name) for name in SAMPLING_NAMES}
        self.resolve()
        return self

    def resolve(self, **given: Any) -> Sampling:
        """The options of a call: ``given`` where not None, else the configured value, else the package's
        default, else the option's; checked once (ranges, then the model's own ``check``)."""
        values = {name: sampling_option(name).default for name in SAMPLING_NAMES}
        values.update(self.defaults())
        for chosen in (self.options, given):
            values.update({name: value for name, value in chosen.items() if value is not None})
        for name, value in values.items():
            sampling_option(name).check(value)
        sampling = Sampling(**values)
        self.check(sampling)
        return sampling

    @property
    def sampling(self) -> Sampling:
        """The configured options, resolved."""
        return self.resolve()

    @property
    def description(self) -> str:
        sampling = self.resolve()
        text = f"{self.what} {self.source.name} on {self.device}: {self.describe_steps(sampling)}"
        if sampling.strength < 1.0:
            text += (
                " from the simulator's image (a translation: its source image) at strength "
                f"{sampling.strength:g}"
            )
        return text

    # --- maps -------------------------------------------------------------------------------------------
    def prepare(
        self, labels: Volume | np.ndarray, plane: str | None = None, slice_index: int | None = None
    ) -> Volume:
        """The map the model works on, checked: a 2D model takes a plane of a 3D map (``plane``,
        ``slice_index``; None: the configured ones), a 3D model needs a 3D map; a sector is added where the
        map has none. The resampled one-hot map is made later, once, by the batches that use it."""
        labels = Volume.of(labels)
        if self.spatial_dims == 3:
            if labels.is_2d:
                raise InputError(f"{self.source}: a 3D model needs a 3D label map, got a 2D one")
            target = labels
        else:
            plane = plane or self.options.get("plane") or sampling_option("plane").default
            index = self.options.get("slice_index") if slice_index is None else slice_index
            target = slice_of(labels, index, plane)
        target = with_sector(target)
        require_heart(target.array)
        return target

    def conditioning(self, target: Volume, source: Volume | None = None) -> Conditioned:
        """A prepared map (and an image to translate on its grid) on the model's grid."""
        from EchoSynthLib.preprocessing.prepare import image_on_grid

        require_source_on(target, source)
        one_hot, grid = model_conditioning(target, self.classes, self.image_shape)
        if source is None:
            return Conditioned(target, one_hot, grid, None)
        return Conditioned(target, one_hot, grid, image_on_grid(source, grid).reshape(1, *self.image_shape))

    def require_sources(self, sources: Sequence[Volume | None]) -> None:
        """InputError where this model cannot draw without an image to translate (none by default)."""

    # --- drawing ----------------------------------------------------------------------------------------
    def synthesize(
        self,
        labels: Volume | np.ndarray,
        n: int = 1,
        seed: int = 0,
        *,
        batch_size: int = 16,
        progress: Steps | None = None,
        source: Volume | None = None,
        **options: Any,
    ) -> list[Volume]:
        """``n`` uint8 images following a canonical label map, each on the prepared map's grid; image k uses
        seed + k. ``options``: ``steps``, ``sampler``, ``guidance_scale``, ``plane``, ``slice_index``,
        ``strength`` (None: see ``resolve``); ``source``: an image on the prepared map's grid to translate
        (sampling starts from it below strength 1); ``progress(done, total)`` counts sampler steps."""
        return self.synthesize_maps(
            [labels], [n], seed, batch_size=batch_size, progress=progress, sources=[source], **options
        )[0]

    def synthesize_maps(
        self,
        maps: Sequence[Volume | np.ndarray],
        counts: Sequence[int],
        seed: int = 0,
        *,
        batch_size: int = 16,
        progress: Steps | None = None,
        sources: Sequence[Volume | None] | None = None,
        **options: Any,
    ) -> list[list[Volume]]:
        """``counts[m]`` images of each map, drawn in batches that run across maps (a network pass per
        batch, not per map); image c of map m is image j = counts[:m] + c of the run and uses seed + j, as
        ``synthesize`` of each map alone would with its own seed. ``sources``: per map, as ``synthesize``."""
        sampling = self.resolve(**options)
        targets = [self.prepare(labels, sampling.plane, sampling.slice_index) for labels in maps]
        return self.draw_maps(targets, counts, seed, sampling, batch_size, progress, sources)

    def draw_maps(
        self,
        targets: Sequence[Volume],
        counts: Sequence[int],
        seed: int,
        sampling: Sampling,
        batch_size: int = 16,
        progress: Steps | None = None,
        sources: Sequence[Volume | None] | None = None,
    ) -> list[list[Volume]]:
        """``synthesize_maps`` of maps already prepared, with resolved options."""
        owner, sources = _image_owners(targets, counts, sources)  # owner[j]: the map of run image j
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        check_seed(seed, len(owner))
        self.require_sources(sources)
        items = [self.conditioning(target, source) for target, source in zip(targets, sources, strict=True)]
        images: list[list[Volume]] = [[] for _ in targets]
        for start, count, advance in step_batches(len(owner), batch_size, progress):
            run = range(start, start + count)
            batch = Batch([items[owner[j]] for j in run], seed + start, sampling, advance, self.simulated)
            output = self.denoise_batch(batch).float().cpu().numpy()
            for j, image in zip(run, output, strict=True):
                item = items[owner[j]]
                images[owner[j]].append(image_back_onto(item.target, image[0], item.grid))
        return images

    # --- the Generator contract (``inference.generators``), with the configured options -------------------
    def generate(self, labels: Volume, n: int, seed: int, progress: Progress | None = None) -> list[Volume]:
        """``n`` images of a prepared map; ``progress(fraction)``."""
        return self.generate_many([labels], [n], seed, progress)[0]

    def generate_many(
        self, maps: Sequence[Volume], counts: Sequence[int], seed: int, progress: Progress | None = None
    ) -> list[list[Volume]]:
        """The images of several prepared maps, in batches across maps."""
        report = None if progress is None else (lambda done, total: progress(done / total))
        return self.draw_maps(maps, counts, seed, self.resolve(), progress=report)

    def translate(self, image: Volume, labels: Volume, seed: int) -> Volume:
        """``image`` (on its prepared map's grid) in the model's look: sampling starts from the image,
        noised ``strength`` of the way (SDEdit; a source-guided model is also guided by it), guided by its
        map; at strength 1 an unguided model does not use the image."""
        return self.draw_maps([labels], [1], seed, self.resolve(), batch_size=1, sources=[image])[0][0]


def _image_owners(
    maps: Sequence[object], counts: Sequence[int], sources: Sequence[object] | None = None
) -> tuple[list[int], list]:
    """For a run over several maps: the map of each run image j (image c of map m is image counts[:m] + c),
    and one source per map (None where none is given), checked."""
    sources = list(sources) if sources is not None else [None] * len(maps)
    if len(counts) != len(maps) or len(sources) != len(maps) or min(counts, default=1) < 1:
        raise InputError(f"one count (at least 1) and one source per map, got {list(counts)}")
    return [m for m, count in enumerate(counts) for _ in range(count)], sources
