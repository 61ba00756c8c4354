"""A label map onto a model's grid and images back onto the map's grid: what every label-conditioned model
does around its sampler (the 2D semantic diffusion model and the latent models, 2D and 3D).

The map is resampled onto a grid of the model's shape that covers it with the aspect ratio kept (as
``echosynth prepare`` does, so a map sees the geometry the model was trained on); images come back onto
the map's own grid, black outside the sector.
"""

from __future__ import annotations

import numpy as np

from EchoSynthLib.data.labels import ClassLayout, Structure, require_heart
from EchoSynthLib.data.sector import SectorGeometry
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.resample import Grid, resample, target_grid


def model_conditioning(
    labels: Volume, layout: ClassLayout, shape: tuple[int, ...]
) -> tuple[np.ndarray, Grid]:
    """The one-hot map (C, *shape) in ``layout``'s classes on a grid of ``shape`` ((rows, cols) or
    (slices, rows, cols)) covering ``labels``, and that grid."""
    require_heart(labels.array)
    grid = target_grid(labels, shape, "pad")
    on_grid = resample(labels.with_array(labels.array.astype(np.uint8)), grid, labels=True).array
    return layout.one_hot_canonical(on_grid.reshape(shape)), grid


def image_back_onto(target: Volume, image: np.ndarray, grid: Grid) -> Volume:
    """A model's image (values in [-1, 1], laid out as ``grid``) as uint8 on ``target``'s grid, black where
    ``target`` is background (outside the sector)."""
    array = (np.asarray(image, dtype=np.float32) + 1.0) * 127.5
    on_grid = Volume(array.reshape(grid.size[::-1]), grid.spacing, grid.origin, grid.direction)
    back = resample(on_grid, Grid.of(target), labels=False).array
    inside = target.array != Structure.BACKGROUND.label
    return target.with_array(np.where(inside, np.clip(np.rint(back), 0, 255), 0).astype(np.uint8))


def with_sector(labels: Volume) -> Volume:
    """The map itself if it draws a sector class, else with the widest default sector added."""
    if (labels.array == Structure.SECTOR.label).any():
        return labels
    sector = SectorGeometry.default_for(labels).mask(labels)
    array = labels.array.astype(np.uint8, copy=True)
    array[(array == Structure.BACKGROUND.label) & sector] = Structure.SECTOR.label
    return labels.with_array(array)


def require_source_on(target: Volume, source: Volume | None) -> None:
    """InputError unless an image to translate (``source``; None: nothing to check) lies on the grid of
    its prepared label map ``target``."""
    if source is not None and not source.same_geometry(target):
        raise InputError("the source image's grid differs from its label map's")


def start_images(target: Volume, grid: Grid, shape: tuple[int, ...], seed: int, count: int) -> np.ndarray:
    """Where a model's sampling starts below strength 1, on its grid of ``shape`` as (count, 1, *shape) in
    [-1, 1]: the training-free simulator's images of the prepared map ``target`` (seeds seed .. seed +
    count - 1)."""
    from EchoSynthLib.preprocessing.prepare import image_on_grid
    from EchoSynthLib.simulation import simulate_bmode

    images = [image_on_grid(simulate_bmode(target, seed + k), grid) for k in range(count)]
    return np.stack(images).reshape(count, 1, *shape)
