"""Joint image + label augmentation for training segmenters (MONAI dictionary transforms).

Inputs are dicts with channel-first ``"image"`` (float, in [-1, 1], -1 black) and ``"labels"``
(integers) as torch tensors or numpy arrays; outputs are torch tensors (MONAI MetaTensors). Both keys
get the same flip and affine; the labels are resampled by nearest neighbour and keep their dtype, so
their values stay a subset of the input's (plus 0 where the affine reaches outside the field of view;
the image is padded with -1 there). Intensity changes touch the image only, which is clipped back to
[-1, 1] at the end.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Lambdad,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.utils import get_equivalent_dtype

from EchoSynthLib.errors import InputError

KEYS = ("image", "labels")


class _PairedAffined(RandAffined):
    """RandAffined with translation as a fraction of the size, -1 image padding and label dtype kept."""

    def __init__(self, translate_fraction: float, **kwargs) -> None:
        super().__init__(keys=KEYS, mode=("bilinear", "nearest"), padding_mode="zeros", **kwargs)
        self.translate_fraction = translate_fraction

    def __call__(self, data: Mapping[Hashable, object], lazy: bool | None = None) -> dict:
        d = dict(data)
        labels_dtype = get_equivalent_dtype(d["labels"].dtype, torch.Tensor)
        spatial_shape = d["image"].shape[1:]
        self.rand_affine.rand_affine_grid.translate_range = tuple(
            self.translate_fraction * n for n in spatial_shape
        )
        d["image"] = torch.as_tensor(d["image"], dtype=torch.float32) + 1.0  # zero padding = black (-1)
        d = super().__call__(d, lazy)
        d["image"] = d["image"] - 1.0
        d["labels"] = torch.round(d["labels"]).to(labels_dtype)
        return d


def _clip_unit(image: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.as_tensor(image), -1.0, 1.0)


def paired_augmentation(
    spatial_dims: int,
    seed: int | None = None,
    *,
    flip_axis: int | None = None,
    flip_prob: float = 0.5,
    affine_prob: float = 0.8,
    rotate_deg: float = 10.0,
    scale_fraction: float = 0.1,
    translate_fraction: float = 0.05,
    gamma: tuple[float, float] = (0.7, 1.5),
    intensity_scale: float = 0.1,
    intensity_shift: float = 0.1,
    noise_std: float = 0.03,
    intensity_prob: float = 0.5,
) -> Compose:
    """A seeded MONAI ``Compose`` over ("image", "labels") for 2D or 3D channel-first data.

    ``flip_axis`` is a spatial axis (default: the last, lateral one). Rotation is about every axis in
    3D; scale and translation are drawn per axis.
    """
    if spatial_dims not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    flip_axis = spatial_dims - 1 if flip_axis is None else flip_axis
    if not 0 <= flip_axis < spatial_dims:
        raise InputError(f"flip_axis must be a spatial axis in 0..{spatial_dims - 1}, got {flip_axis}")
    rotate = math.radians(rotate_deg)
    transforms = Compose(
        [
            RandFlipd(keys=KEYS, prob=flip_prob, spatial_axis=flip_axis),
            _PairedAffined(
                translate_fraction,
                prob=affine_prob,
                rotate_range=(rotate,) if spatial_dims == 2 else (rotate,) * 3,
                scale_range=(scale_fraction,) * spatial_dims,
            ),
            RandAdjustContrastd(keys="image", prob=intensity_prob, gamma=gamma),
            RandScaleIntensityd(keys="image", factors=intensity_scale, prob=intensity_prob),
            RandShiftIntensityd(keys="image", offsets=intensity_shift, prob=intensity_prob),
            RandGaussianNoised(keys="image", prob=intensity_prob, std=noise_std),
            Lambdad(keys="image", func=_clip_unit),  # keep the image in [-1, 1]
        ]
    )
    if seed is not None:
        transforms.set_random_state(seed=int(np.uint32(seed % 2**32)))
    return transforms
