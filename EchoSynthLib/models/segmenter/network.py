"""The label-adherence segmenter: a small MONAI U-Net that segments echo images into the cache's classes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.models.device import pick_device
from EchoSynthLib.models.families import SEGMENTER_KIND
from EchoSynthLib.models.package import load_weights, read_package_config
from EchoSynthLib.models.settings import SettingsMixin

KIND = SEGMENTER_KIND
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

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "auto") -> Segmenter:
        """Load a ``segmenter2d`` model package (a folder, or the name of an installed one)."""
        from EchoSynthLib.models.registry import resolve_model

        folder = resolve_model(folder, kind=KIND)
        settings = read_package_config(folder, KIND)
        config = SegmenterConfig.from_dict(settings)
        resolved = pick_device(device)
        return cls(config, load_weights(folder, build_segmenter(config)).eval().to(resolved), resolved)

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
