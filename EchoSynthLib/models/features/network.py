"""The echo encoder network (MONAI's 2D ResNet without its classifier) and the loaded encoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.models.features.config import EncoderConfig
from EchoSynthLib.store.families import ENCODER_KIND
from EchoSynthLib.store.package import load_weights, read_package_config

KIND = ENCODER_KIND
PROJECTION = "projection"  # the training-only head, not shipped


def build_encoder(config: EncoderConfig) -> torch.nn.Module:
    """MONAI's 2D ResNet (basic blocks), one grey channel in, globally pooled features out."""
    from monai.networks.nets import ResNet

    return ResNet(
        block="basic",
        layers=list(config.blocks),
        block_inplanes=list(config.channels),
        spatial_dims=2,
        n_input_channels=1,
        conv1_t_size=7,
        conv1_t_stride=2,
        feed_forward=False,
    )


def build_projection(config: EncoderConfig) -> torch.nn.Module:
    """The contrastive projection head (SimCLR's two-layer MLP)."""
    return torch.nn.Sequential(
        torch.nn.Linear(config.features, config.features),
        torch.nn.ReLU(inplace=True),
        torch.nn.Linear(config.features, config.projection),
    )


@dataclass
class EchoEncoder:
    """A loaded echo encoder: ``embed`` maps images to feature vectors."""

    config: EncoderConfig
    model: torch.nn.Module
    device: torch.device
    source: Path

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "auto") -> EchoEncoder:
        """Load an ``echoencoder2d`` package (a folder, or the name of an installed one)."""
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder, kind=KIND)
        config = EncoderConfig.from_dict(read_package_config(folder, KIND))
        resolved = pick_device(device)
        model = load_weights(folder, build_encoder(config)).eval().to(resolved)
        return cls(config, model, resolved, Path(folder))

    @torch.no_grad()
    def embed(self, images: np.ndarray | torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Features (N, F) float64 of images (N, H, W) or (N, 1, H, W) with values in [-1, 1]."""
        images = torch.as_tensor(images, dtype=torch.float32)
        if images.ndim == 3:
            images = images[:, None]
        parts = [
            self.model(images[start : start + batch_size].to(self.device)).double().cpu().numpy()
            for start in range(0, images.shape[0], batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.config.features))
