"""The label-adherence segmenter: a small MONAI U-Net that segments echo images into the cache's classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.families import SEGMENTER_KIND
from EchoSynthLib.store.package import load_weights, read_package_config

KIND = SEGMENTER_KIND
DEFAULT_SHAPE = (128, 128)  # for a package that does not record its training grid
# Run settings of a segmenter run unless --set says otherwise.
RUN_DEFAULTS = {"max_steps": 2000, "val_every": 250, "checkpoint_every": 250}


@dataclass(frozen=True)
class SegmenterConfig(SettingsMixin):
    """Network and training recipe (saved with the run and the model; how a run goes is ``RunSettings``)."""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "channels": (1, None),
        "strides": (1, None),
        "batch_size": (1, None),
        "learning_rate": (1e-12, 10.0),
        "seed": (0, SEED_MAX),
    }

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 2
    batch_size: int = 16
    learning_rate: float = 1e-3
    augment: bool = True
    seed: int = 0
    classes: ClassLayout = field(default_factory=lambda: ClassLayout("classes", {}))  # from the cache


def build_segmenter(config: SegmenterConfig) -> torch.nn.Module:
    """MONAI's 2D U-Net: one image channel in, one logit per class out."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=len(config.classes),
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
    )


@dataclass
class Segmenter:
    """A loaded segmenter."""

    config: SegmenterConfig
    model: torch.nn.Module
    device: torch.device
    shape: tuple[int, int] = DEFAULT_SHAPE  # (rows, cols) of the grid it was trained on

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "auto") -> Segmenter:
        """Load a ``segmenter2d`` model package (a folder, or the name of an installed one)."""
        from EchoSynthLib.store.package import read_package_header
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder, kind=KIND)
        settings = read_package_config(folder, KIND)
        config = SegmenterConfig.from_dict(settings)
        resolved = pick_device(device)
        provenance = read_package_header(folder).get("provenance") or {}
        size = ((provenance.get("training_data") or {}).get("cache_settings") or {}).get("size")
        shape = tuple(int(n) for n in size) if isinstance(size, list) and len(size) == 2 else DEFAULT_SHAPE
        model = load_weights(folder, build_segmenter(config)).eval().to(resolved)
        return cls(config, model, resolved, shape)

    def segment(self, image: Volume) -> Volume:
        """The canonical label map of a 2D image of any grid, on that grid: the image is put on the
        segmenter's training grid as ``prepare`` puts cases (aspect kept, padded), segmented, and the labels
        resampled back (nearest neighbour)."""
        from EchoSynthLib.preprocessing.prepare import image_on_grid
        from EchoSynthLib.preprocessing.resample import Grid, resample, target_grid

        if not image.is_2d:
            raise InputError(f"the segmenter takes 2D images, got a {'x'.join(map(str, image.size))} volume")
        grid = target_grid(image, self.shape, "pad")
        array = image_on_grid(image, grid).reshape(1, *self.shape)
        labels = self.predict_canonical(array)[0].astype(np.uint8)
        on_grid = Volume(labels[np.newaxis], grid.spacing, grid.origin, grid.direction)
        return image.with_array(resample(on_grid, Grid.of(image), labels=True).array.astype(np.uint8))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> np.ndarray:
        """Class values (B, H, W) for images (B, 1, H, W) in [-1, 1]."""
        logits = self.model(images.to(self.device).float())
        return self.config.classes.channel_values[logits.argmax(1).cpu().numpy()]

    def predict_canonical(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Canonical label maps (N, H, W) of images (N, H, W) in [-1, 1]."""
        parts = [
            self.predict(torch.as_tensor(images[start : start + batch_size], dtype=torch.float32)[:, None])
            for start in range(0, len(images), batch_size)
        ]
        return self.config.classes.to_canonical(np.concatenate(parts))
