"""The latent denoiser, 2D or 3D. Label-conditioned synthesis conditions on the one-hot map at image
resolution in one of two ways (``LatentConfig.conditioning``):

- ``spade``: MONAI's ``SPADEDiffusionModelUNet``: the map modulates every decoder normalisation (MONAI
  resizes it to each level);
- ``controlnet``: MONAI's ``DiffusionModelUNet`` plus a MONAI ``ControlNet`` beside it: the ControlNet's
  strided embedding brings the map down to the latent grid, and its zero-initialised outputs are added to
  the U-Net's skip connections and middle block. Both are trained together from scratch here (the
  ControlNet paper freezes a pretrained base; there is no pretrained echo latent model to freeze).

Paired generation (nothing to condition on) is the plain ``DiffusionModelUNet``."""

from __future__ import annotations

import math

import torch

from EchoSynthLib.models.latent.config import LatentConfig


class Denoiser(torch.nn.Module):
    """One call for both tasks: ``(x_t, t, seg)``, where ``seg`` is the one-hot map (ignored, and may be
    None, for paired generation). Predicts the noise (``ddpm``) or the velocity (``rflow``)."""

    def __init__(self, config: LatentConfig) -> None:
        from monai.networks.nets import ControlNet, DiffusionModelUNet, SPADEDiffusionModelUNet

        super().__init__()
        self.conditioning = config.conditioning if config.conditioned else "none"
        common = {
            "spatial_dims": config.spatial_dims,
            "in_channels": config.latent_channels,
            "num_res_blocks": config.num_res_blocks,
            "channels": config.channels,
            "attention_levels": config.attention_levels,
            "norm_num_groups": config.norm_groups,
            "num_head_channels": config.num_head_channels,
        }
        if self.conditioning == "spade":
            self.unet = SPADEDiffusionModelUNet(
                out_channels=config.latent_channels,
                label_nc=len(config.classes),
                spade_intermediate_channels=config.spade_channels,
                **common,
            )
            return
        self.unet = DiffusionModelUNet(out_channels=config.latent_channels, **common)
        if self.conditioning == "controlnet":
            # One stride-2 embedding block per halving from the image grid to the latent grid.
            halvings = int(math.log2(config.downsampling))
            embedding = tuple(config.spade_channels * 2**i for i in range(halvings + 1))
            self.control = ControlNet(
                conditioning_embedding_in_channels=len(config.classes),
                conditioning_embedding_num_channels=embedding,
                **common,
            )

    def forward(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditioning == "spade":
            return self.unet(x, t, seg)
        if self.conditioning == "controlnet":
            down, middle = self.control(x, t, seg)
            return self.unet(
                x, t, down_block_additional_residuals=tuple(down), mid_block_additional_residual=middle
            )
        return self.unet(x, t)
