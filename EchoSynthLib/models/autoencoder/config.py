"""Settings of the autoencoder (saved with every run and package; how a run goes is ``RunSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError

RUN_DEFAULTS: dict[str, Any] = {
    "max_steps": 20_000,
    "val_every": 500,
    "sample_every": 1000,
    "checkpoint_every": 500,
}


@dataclass(frozen=True)
class AutoencoderConfig(SettingsMixin):
    """Network (MONAI ``AutoencoderKL``: downsampling by 2 per level after the first), discriminator and the
    two-phase recipe. ``with_labels``: image + one-hot label channels in, image + label logits out (DIFF-3);
    otherwise the image alone (the label-conditioned latent models)."""

    spatial_dims: int = 2
    with_labels: bool = False
    channels: tuple[int, ...] = (32, 64, 64)
    num_res_blocks: int = 1
    latent_channels: int = 4
    norm_groups: int = 32
    # Losses (DIFF-3: L1 + KL first, then adversarial and perceptual terms).
    kl_weight: float = 1e-6
    label_weight: float = 1.0  # cross-entropy + Dice on the label logits (with_labels only)
    adversarial_weight: float = 0.01
    ssim_weight: float = 0.2  # a perceptual term: 1 - SSIM (no ImageNet network can be downloaded here)
    # The other perceptual term: feature distance in the echo encoder (``perceptual.EchoPerceptualLoss``,
    # 2D only). Measured (docs/BENCHMARKS.md): it keeps speckle far better than 1 - SSIM; off by default as
    # it needs the CAMUS-trained (non-commercial) echo encoder and works in 2D only.
    encoder_weight: float = 0.0
    encoder: str = "echo-encoder-camus"
    phase_one_steps: int = 2000  # steps before the adversarial and MS-SSIM terms start
    discriminator_channels: int = 32
    discriminator_layers: int = 3
    # Training recipe.
    batch_size: int = 8
    learning_rate: float = 1e-4
    discriminator_learning_rate: float = 1e-4
    seed: int = 0
    classes: ClassLayout = field(default_factory=lambda: ClassLayout("classes", {}))  # from the cache

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "spatial_dims": (2, 3),
        "channels": (1, None),
        "num_res_blocks": (1, None),
        "latent_channels": (1, None),
        "norm_groups": (1, None),
        "kl_weight": (0.0, None),
        "label_weight": (0.0, None),
        "adversarial_weight": (0.0, None),
        "ssim_weight": (0.0, None),
        "encoder_weight": (0.0, None),
        "discriminator_channels": (1, None),
        "discriminator_layers": (1, None),
        "batch_size": (1, None),
        "learning_rate": (1e-12, 10.0),
        "discriminator_learning_rate": (1e-12, 10.0),
        "seed": (0, SEED_MAX),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.encoder_weight > 0 and self.spatial_dims != 2:
            raise InputError("setting encoder_weight > 0 needs a 2D autoencoder (the echo encoder is 2D)")
        if any(c % self.norm_groups for c in self.channels):
            raise InputError(f"every channel count must be a multiple of norm_groups={self.norm_groups}")

    @property
    def downsampling(self) -> int:
        """How many times smaller the latent grid is than the image grid, per side."""
        return 2 ** (len(self.channels) - 1)

    @property
    def input_channels(self) -> int:
        """The image, plus one channel per class with labels."""
        return 1 + (len(self.classes) if self.with_labels else 0)
