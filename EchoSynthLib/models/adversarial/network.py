"""The adversarial diffusion model's two networks, both MONAI's.

- GanGenerator G(x_t, t, z, guide) -> x_0: ``SPADEDiffusionModelUNet`` with the label map through SPADE (as
  the semantic diffusion model), x_t, the noise maps z and any image guide stacked as input channels
  (DDGAN modulates its layers with a latent vector instead; MONAI's U-Net has no such input, and noise maps
  give the generator the same freedom), the step index embedded as MONAI embeds diffusion timesteps, and
  tanh on the output so x_0 stays in the image range; or (``prediction = "epsilon"``, a run started from
  an SDM) the U-Net's output is the noise in x_t and x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar), clipped
  to the image range. With ``fold`` r > 1 the U-Net runs on the inputs folded r x r into channels and its
  output unfolds back (``torch.nn.functional.pixel_unshuffle`` / ``pixel_shuffle``).
- Discriminator D(x_{t-1}, x_t, t, guide): ``DiffusionModelEncoder`` (MONAI's time-conditioned classifier:
  residual blocks with the step embedded as in the generator, group norm, so a sample's score does not
  depend on its batch, and one score per image) on the pair, the one-hot map and any image guide. This is
  DDGAN's discriminator design (time embedding, residual down blocks, a global score). Chosen by
  measurement (``bench/discriminator_study.py``): against a fixed generator on CAMUS, MONAI's
  ``PatchDiscriminator`` with t / T as a constant channel barely separated real from generated pairs
  and, in the first full run, flattened to a constant; this one separates them within ~100 steps.
"""

from __future__ import annotations

import torch

from EchoSynthLib.models.adversarial.config import AdversarialConfig
from EchoSynthLib.models.adversarial.process import vp_alpha_bar

DISCRIMINATOR = "discriminator"


class GanGenerator(torch.nn.Module):
    """x_0 from (x_t, t, z, image guides) and the one-hot map ``seg``."""

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        from monai.networks.nets import SPADEDiffusionModelUNet

        self.epsilon = config.prediction == "epsilon"
        # Not in the state dict: both follow from the config.
        self.register_buffer("embedded", torch.tensor(config.embedded_steps), persistent=False)
        alpha_bar = vp_alpha_bar(config.steps, config.beta_min, config.beta_max)
        self.register_buffer("alpha_bar", alpha_bar.float(), persistent=False)
        self.fold = config.fold
        self.unet = SPADEDiffusionModelUNet(
            spatial_dims=2,
            in_channels=(1 + config.noise_channels + config.image_guides) * self.fold**2,
            out_channels=self.fold**2,
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
        if self.fold > 1:
            inputs = torch.nn.functional.pixel_unshuffle(inputs, self.fold)
        output = self.unet(inputs, self.embedded[t], seg)
        if self.fold > 1:
            output = torch.nn.functional.pixel_shuffle(output, self.fold)
        if not self.epsilon:
            return torch.tanh(output)
        alpha_bar = self.alpha_bar[t].view(-1, *[1] * (x_t.ndim - 1))
        return ((x_t - (1 - alpha_bar).sqrt() * output) / alpha_bar.sqrt()).clamp(-1, 1)


class Discriminator(torch.nn.Module):
    """One logit per (x_{t-1}, x_t) pair at step t with its guides."""

    def __init__(self, config: AdversarialConfig) -> None:
        super().__init__()
        from monai.networks.nets.diffusion_model_unet import DiffusionModelEncoder

        levels = len(config.discriminator_channels)
        self.register_buffer("embedded", torch.tensor(config.embedded_steps), persistent=False)
        self.encoder = DiffusionModelEncoder(
            spatial_dims=2,
            in_channels=2 + len(config.classes) + config.image_guides,
            out_channels=1,
            input_shape=(config.image_size, config.image_size),
            num_res_blocks=1,
            channels=config.discriminator_channels,
            attention_levels=(False,) * levels,
            norm_num_groups=config.norm_groups,
        )
        # No dropout (MONAI's classifier head has 0.1): it would draw from the global random stream, which
        # a resumed or distributed run does not replay, and DDGAN's discriminator has none either.
        for module in self.encoder.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0

    def forward(
        self,
        earlier: torch.Tensor,
        x_t: torch.Tensor,
        t: torch.Tensor,
        guides: torch.Tensor,
        seg: torch.Tensor,
    ) -> torch.Tensor:
        inputs = torch.cat([earlier, x_t, seg, guides], dim=1)
        return self.encoder(inputs, self.embedded[t])
