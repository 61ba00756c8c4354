"""The latent denoiser: MONAI's ``SPADEDiffusionModelUNet`` (label-conditioned: the one-hot map, at image
resolution, modulates every decoder normalisation; MONAI resizes it to each level) or
``DiffusionModelUNet`` (paired generation, nothing to condition on), 2D or 3D."""

from __future__ import annotations

import torch

from EchoSynthLib.models.latent.config import LatentConfig


class Denoiser(torch.nn.Module):
    """One call for both tasks: ``(x_t, t, seg)``, where ``seg`` is the one-hot map (ignored, and may be
    None, for paired generation). Predicts the noise (``ddpm``) or the velocity (``rflow``)."""

    def __init__(self, config: LatentConfig) -> None:
        from monai.networks.nets import DiffusionModelUNet, SPADEDiffusionModelUNet

        super().__init__()
        self.conditioned = config.conditioned
        common = {
            "spatial_dims": config.spatial_dims,
            "in_channels": config.latent_channels,
            "out_channels": config.latent_channels,
            "num_res_blocks": config.num_res_blocks,
            "channels": config.channels,
            "attention_levels": config.attention_levels,
            "norm_num_groups": config.norm_groups,
            "num_head_channels": config.num_head_channels,
        }
        if config.conditioned:
            self.unet = SPADEDiffusionModelUNet(
                label_nc=len(config.classes), spade_intermediate_channels=config.spade_channels, **common
            )
        else:
            self.unet = DiffusionModelUNet(**common)

    def forward(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x, t, seg) if self.conditioned else self.unet(x, t)
