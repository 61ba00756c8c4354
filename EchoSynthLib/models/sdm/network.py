"""The 2D semantic diffusion model's network: MONAI's SPADE-conditioned diffusion U-Net.

As in Echo from noise: plain residual blocks in the encoder, spatially adaptive normalisation (SPADE,
from the one-hot label map) in the middle and decoder blocks; two output channels (noise and the
learned-variance interpolation). MONAI's ``SPADEDiffusionModelUNet`` is exactly that network.
"""

from __future__ import annotations

from EchoSynthLib.models.sdm.config import SDMConfig


def build_sdm(config: SDMConfig):
    """The SPADE diffusion U-Net for ``config`` (1 image channel in; noise + variance channels out)."""
    from monai.networks.nets import SPADEDiffusionModelUNet

    return SPADEDiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        label_nc=config.label_channels,
        num_res_blocks=config.num_res_blocks,
        channels=config.channels,
        attention_levels=config.attention_levels,
        norm_num_groups=config.norm_groups,
        num_head_channels=config.num_head_channels,
        spade_intermediate_channels=config.spade_channels,
    )
