"""Drawing new anatomies from a shape model, and their images (``echosynth generate``, Slicer's Generate
cases): case 2h and 2h + 1 are the ED and ES maps of one new heart h (its view and mode coefficients
drawn from seed + 2h, the number of its ED case, so a run in batches draws the same hearts; each
coefficient a standard normal clipped to +/- ``truncation``), and each case's image is drawn by the
package's label map -> image model with seed + k."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.shape_model.config import ShapeModelConfig
from EchoSynthLib.models.shape_model.distances import REGIONS, labels_from
from EchoSynthLib.models.shape_model.fit import PHASES

Steps = Callable[[int, int], None]


@dataclass
class ViewModel:
    """One view's principal components: mean (D,), modes (K, D), scales (K,) (standard deviations)."""

    mean: np.ndarray
    modes: np.ndarray
    scales: np.ndarray

    def draw(self, rng: np.random.Generator, truncation: float) -> np.ndarray:
        """One heart's vector: the mean plus each mode times a clipped standard normal times its scale."""
        coefficients = np.clip(rng.standard_normal(len(self.scales)), -truncation, truncation)
        return self.mean + (coefficients * self.scales) @ self.modes


class ShapeModel:
    """A loaded shape model: ``generate_maps`` (new hearts' label maps) and ``generate_pairs`` (with their
    images), the paired-generation contract of ``sampling.cases``."""

    def __init__(
        self,
        folder: Path,
        config: ShapeModelConfig,
        views: dict[str, ViewModel],
        device: str,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.source = folder
        self.config = config
        self.views = views
        self.device = device
        self.warn = warn
        self.spatial_dims = 2
        self._image_generator = None

    @classmethod
    def load(
        cls, folder: str | Path, device: str = "auto", warn: Callable[[str], None] | None = None
    ) -> ShapeModel:
        from EchoSynthLib.store.families import SHAPE_MODEL
        from EchoSynthLib.store.package import read_package_config, read_weights
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder)
        config = ShapeModelConfig.from_dict(read_package_config(folder, SHAPE_MODEL.kind))
        if not config.views:
            raise InputError(f"{folder}: a shape model without views")
        views = {}
        for view in config.views:
            weights = read_weights(folder, f"view_{view}")
            parts = {k: v.float().numpy().astype(np.float64) for k, v in weights.items()}
            views[view] = ViewModel(parts["mean"], parts["modes"], parts["scales"])
        return cls(Path(folder), config, views, device, warn)

    @property
    def description(self) -> str:
        views = ", ".join(self.config.views)
        return f"shape model {self.source.name} ({views}), images by {self.config.image_model}"

    def resolve(self, **options) -> None:
        """Check sampling options before anything is written (the image model's own checks)."""
        self._images(options.get("steps"), options.get("sampler"))

    def _images(self, steps: int | None, sampler: str | None):
        """The label map -> image generator (opened once), with the given sampling options."""
        from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

        if self._image_generator is None:
            given = {k: v for k, v in (("steps", steps), ("sampler", sampler)) if v is not None}
            device = "cpu" if self.device == "cpu" else "auto"
            settings = GeneratorSettings(self.config.image_model, device=device, **given)
            self._image_generator = open_generator(settings, self.warn)
        return self._image_generator

    def generate_maps(self, n: int, seed: int = 0) -> list[Volume]:
        """Cases ``0 .. n - 1``: canonical label maps on the model's output grid (its spacing,
        origin 0, probe at the top); case k is phase k % 2 (ED, ES) of heart k // 2, drawn from seed +
        k - k % 2."""
        shape = tuple(self.config.image_shape[-2:])
        regions, grid = len(REGIONS), self.config.grid
        maps, hearts = [], {}
        for k in range(n):
            heart = k // 2
            if heart not in hearts:  # seeded by its ED case's number: the same heart in any batching
                rng = np.random.default_rng(seed + 2 * heart)
                view = self.config.views[int(rng.integers(len(self.config.views)))]
                vector = self.views[view].draw(rng, self.config.truncation)
                hearts[heart] = vector.reshape(len(PHASES), regions, grid, grid)
            labels = labels_from(hearts[heart][k % 2], shape, self.config.minimum)
            maps.append(Volume(labels[np.newaxis], tuple(self.config.spacing)))
        return maps

    def generate_pairs(
        self,
        n: int = 1,
        steps: int | None = None,
        sampler: str | None = None,
        seed: int = 0,
        progress: Steps | None = None,
    ) -> list[tuple[Volume, Volume]]:
        """``n`` (uint8 image, canonical label map) pairs: case k's map (``generate_maps``) and its image
        drawn with seed + k."""
        from EchoSynthLib.inference.generators import generate_for_maps

        if n < 1:
            raise InputError(f"n must be at least 1, got {n}")
        check_seed(seed, n)
        maps = self.generate_maps(n, seed)
        images = self._images(steps, sampler)
        prepared = [images.prepare(m) for m in maps]
        report = None if progress is None else (lambda fraction: progress(round(fraction * n), n))
        drawn = generate_for_maps(images, prepared, [1] * n, seed, report)
        return [(made[0], labels) for made, labels in zip(drawn, maps, strict=True)]
