"""The autoencoder and its patch discriminator (MONAI), and a loaded autoencoder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
from EchoSynthLib.store.families import AUTOENCODER_KIND
from EchoSynthLib.store.package import load_weights, read_package_config

KIND = AUTOENCODER_KIND
DISCRIMINATOR = "discriminator"


def build_autoencoder(config: AutoencoderConfig) -> torch.nn.Module:
    """MONAI's ``AutoencoderKL`` without attention (it costs most at full resolution, and DIFF-3's small
    volumes do without it)."""
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(
        spatial_dims=config.spatial_dims,
        in_channels=config.input_channels,
        out_channels=config.input_channels,
        channels=config.channels,
        num_res_blocks=config.num_res_blocks,
        attention_levels=(False,) * len(config.channels),
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_groups,
        with_encoder_nonlocal_attn=False,
        with_decoder_nonlocal_attn=False,
    )


def build_discriminator(config: AutoencoderConfig) -> torch.nn.Module:
    """MONAI's ``PatchDiscriminator`` on the image channel."""
    from monai.networks.nets import PatchDiscriminator

    return PatchDiscriminator(
        spatial_dims=config.spatial_dims,
        channels=config.discriminator_channels,
        in_channels=1,
        num_layers_d=config.discriminator_layers,
    )


@dataclass
class Autoencoder:
    """A loaded autoencoder: latents from images (and labels), images (and label logits) from latents."""

    config: AutoencoderConfig
    model: torch.nn.Module
    device: torch.device

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "auto") -> Autoencoder:
        """Load an ``autoencoder`` package (a folder, or the name of an installed one)."""
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(folder, kind=KIND)
        config = AutoencoderConfig.from_dict(read_package_config(folder, KIND))
        resolved = pick_device(device)
        return cls(config, load_weights(folder, build_autoencoder(config)).eval().to(resolved), resolved)

    @torch.no_grad()
    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and standard deviation of the latents of inputs (B, C, ...)."""
        return self.model.encode(inputs.to(self.device).float())

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Image (and label logits) channels of latents."""
        return self.model.decode(latents.to(self.device).float())
