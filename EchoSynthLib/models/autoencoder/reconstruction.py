"""How well an autoencoder gives back what it was given: per-case SSIM of the image and Dice of the label
map, reconstructed from the posterior mean (the run's validation and ``bench/autoencoder_reconstruction.py``
both measure with this)."""

from __future__ import annotations

import numpy as np
import torch

from EchoSynthLib.models.autoencoder.config import AutoencoderConfig


def autoencoder_inputs(config: AutoencoderConfig, image: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The network's input: the image (B, 1, ...), with the one-hot labels (B, C, ...) when it takes them."""
    return torch.cat([image, labels], 1) if config.with_labels else image


@torch.no_grad()
def reconstruction_scores(
    model: torch.nn.Module, config: AutoencoderConfig, image: torch.Tensor, labels: torch.Tensor
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-case ``ssim`` (images in [-1, 1], MONAI ``SSIMMetric``, window 7) and, for an autoencoder with
    labels, ``dice_<structure>`` (argmax of the label logits against the given one-hot labels; NaN where
    a structure is absent), with the reconstructed images (B, ...) in [-1, 1]."""
    from monai.metrics import SSIMMetric

    from EchoSynthLib.metrics.dice import dice_per_structure

    inputs = autoencoder_inputs(config, image, labels)
    output = model.decode(model.encode(inputs)[0])
    images = output[:, :1].clamp(-1, 1)
    metric = SSIMMetric(spatial_dims=config.spatial_dims, data_range=2.0, win_size=7)
    scores = {"ssim": metric(images, image).reshape(-1).cpu().numpy()}
    if config.with_labels:
        layout = config.classes
        predicted = layout.channel_values[output[:, 1:].argmax(1).cpu().numpy()]
        truth = layout.channel_values[labels.argmax(1).cpu().numpy()]
        scores |= {f"dice_{k}": v for k, v in dice_per_structure(predicted, truth, layout).items()}
    return scores, images[:, 0].cpu().numpy()
