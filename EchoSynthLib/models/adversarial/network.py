"""The adversarial diffusion model's two networks, both MONAI's.

- Generator G(x_t, t, z, guide) -> x_0: ``SPADEDiffusionModelUNet`` with the label map through SPADE (as
  the semantic diffusion model), x_t, the noise maps z and any image guide stacked as input channels
  (DDGAN modulates its layers with a latent vector instead; MONAI's U-Net has no such input, and noise maps
  give the generator the same freedom), the step index embedded as MONAI embeds diffusion timesteps, and
  tanh on the output so x_0 stays in the image range.
- Discriminator D(x_{t-1}, x_t, t, guide): ``PatchDiscriminator`` (instance norm, so a sample's score does
  not depend on its batch) on the pair, the one-hot map, any image guide and t / T as a constant channel.
"""

from __future__ import annotations

import torch

from EchoSynthLib.models.adversarial.config import AdversarialConfig

DISCRIMINATOR = "discriminator"
TIME_SCALE = 1000  # step j is embedded as timestep j * TIME_SCALE / T, spread like a 1000-step model's


class Generator(torch.nn.Module):
    """x_0 from (x_t, t, z, image guides) and the one-hot map ``seg``."""

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        from monai.networks.nets import SPADEDiffusionModelUNet

        self.steps = config.steps
        self.unet = SPADEDiffusionModelUNet(
            spatial_dims=2,
            in_channels=1 + config.noise_channels + config.image_guides,
            out_channels=1,
            label_nc=len(config.classes),
            num_res_blocks=config.num_res_blocks,
            channels=config.channels,
            attention_levels=config.attention_levels,
            norm_num_groups=config.norm_groups,
            num_head_channels=config.num_head_channels,
            spade_intermediate_channels=config.spade_channels,
        )

    def forward(
        self, x_t: torch.Tensor, t: torch.Tensor, z: torch.Tensor, guides: torch.Tensor, seg: torch.Tensor
    ):
        inputs = torch.cat([x_t, z, guides], dim=1)
        return torch.tanh(self.unet(inputs, t * (TIME_SCALE // self.steps), seg))


class Discriminator(torch.nn.Module):
    """Patch logits for (x_{t-1}, x_t) pairs at step t with their guides."""

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        from monai.networks.nets import PatchDiscriminator

        self.steps = config.steps
        self.patches = PatchDiscriminator(
            spatial_dims=2,
            channels=config.discriminator_channels,
            in_channels=3 + len(config.classes) + config.image_guides,
            num_layers_d=config.discriminator_layers,
            norm="INSTANCE",
        )

    def forward(
        self,
        earlier: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        guides: torch.Tensor,
        seg: torch.Tensor,
    ) -> torch.Tensor:
        time = (t.to(x_t.dtype) / self.steps).view(-1, 1, 1, 1).expand_as(x_t)
        return self.patches(torch.cat([earlier, x_t, time, seg, guides], dim=1))[-1]
