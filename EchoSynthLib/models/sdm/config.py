"""Settings of the 2D semantic diffusion model: network, diffusion process and training, with presets
per image size (saved with every run and package)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.settings import SettingsMixin

# Network sizes per image side. The paper's 256 model (base 256, multipliers 1,1,2,2,4,4, attention at
# 32/16/8) is several times bigger. Only the 64 preset (3.5 M parameters, 14 MB in float32) fits the
# 16 MB per-file shipping limit as is; the 128 preset has 19.4 M parameters (78 MB).
PRESETS: dict[int, dict[str, Any]] = {
    # 64: small enough to train on a laptop CPU (about 1.4 s per batch of 16 on 2 cores), short-run EMA.
    64: {
        "channels": (32, 64, 128),
        "attention_levels": (False, False, True),
        "num_res_blocks": 1,
        "spade_channels": 32,
        "ema_decay": 0.999,
    },
    128: {
        "channels": (64, 64, 128, 256),
        "attention_levels": (False, False, True, True),
        "num_res_blocks": 2,
    },
    256: {
        "channels": (64, 64, 128, 128, 256, 256),
        "attention_levels": (False, False, False, True, True, True),
        "num_res_blocks": 2,
    },
}


@dataclass(frozen=True)
class SDMConfig(SettingsMixin):
    """Everything that defines a semantic diffusion model and its training (saved with every run/model)."""

    image_size: int = 64
    label_channels: int = 5
    channels: tuple[int, ...] = (32, 64, 128)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    spade_channels: int = 32
    norm_groups: int = 32
    # Diffusion (paper: cosine schedule, T = 1000, learned variance, MSE + 0.001 * VLB).
    timesteps: int = 1000
    schedule: str = "cosine"
    vlb_weight: float = 0.001
    # Training.
    batch_size: int = 16  # the global batch of a step, over every process under torchrun
    accumulation_steps: int = 1  # micro-batches per step (same result, less memory)
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    max_steps: int = 50_000
    flip_prob: float = 0.5
    label_dropout: float = 0.0  # > 0 trains for classifier-free guidance (off, as in the paper)
    mixed_precision: bool = True  # bf16 autocast on GPU
    seed: int = 0
    workers: int = 2
    log_every: int = 50
    val_every: int = 500
    sample_every: int = 2000
    checkpoint_every: int = 500
    sample_steps: int = 25
    classes: dict[str, str] = field(default_factory=dict)  # class value -> structure name, from the cache

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "image_size": (8, None),
        "label_channels": (1, None),
        "channels": (1, None),
        "num_res_blocks": (1, None),
        "num_head_channels": (1, None),
        "spade_channels": (1, None),
        "norm_groups": (1, None),
        "timesteps": (2, 100_000),
        "vlb_weight": (0.0, None),
        "batch_size": (1, None),
        "accumulation_steps": (1, None),
        "learning_rate": (1e-12, 10.0),
        "weight_decay": (0.0, None),
        "grad_clip": (1e-12, None),
        "ema_decay": (0.0, 1.0),
        "max_steps": (1, None),
        "flip_prob": (0.0, 1.0),
        "label_dropout": (0.0, 0.999),
        "seed": (0, SEED_MAX),
        "log_every": (1, None),
        "val_every": (1, None),
        "sample_every": (1, None),
        "checkpoint_every": (1, None),
        "sample_steps": (1, None),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_steps > self.timesteps:
            raise InputError(
                f"setting sample_steps ({self.sample_steps}) must be at most timesteps ({self.timesteps})"
            )
        if len(self.channels) != len(self.attention_levels):
            raise InputError("channels and attention_levels need one entry per resolution level")
        if any(c % self.norm_groups for c in self.channels):
            raise InputError(f"every channel count must be a multiple of norm_groups={self.norm_groups}")
        if self.image_size % 2 ** (len(self.channels) - 1):
            raise InputError(
                f"image_size {self.image_size} must be divisible by {2 ** (len(self.channels) - 1)}"
            )
        if not 0 <= self.label_dropout < 1 or not 0 <= self.flip_prob <= 1:
            raise InputError("label_dropout must be in [0, 1) and flip_prob in [0, 1]")

    @classmethod
    def preset(cls, size: int, **overrides: Any) -> SDMConfig:
        """The preset nearest to ``size`` (64, 128 or 256), for images of ``size``, with ``overrides``."""
        if size < 8:
            raise InputError(f"image size must be at least 8, got {size}")
        nearest = min(PRESETS, key=lambda preset: abs(preset - size))
        return cls.from_dict({"image_size": size, **PRESETS[nearest], **overrides})
