"""Settings of the 2D semantic diffusion model: network, diffusion process and training recipe, with
presets per image size (saved with every run and package; how a run goes is ``RunSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError

# Run settings of an SDM run unless --set says otherwise (long runs: rare validation and grids).
RUN_DEFAULTS: dict[str, Any] = {
    "max_steps": 50_000,
    "val_every": 500,
    "sample_every": 2000,
    "checkpoint_every": 500,
}

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
    # Training recipe.
    batch_size: int = 16  # the global batch of a step, over every process under torchrun
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    flip_prob: float = 0.5
    label_dropout: float = 0.0  # > 0 trains for classifier-free guidance (off, as in the paper)
    # Sampling default (``--strength`` overrides): 1 starts from pure noise; below 1 from the simulator's
    # image of the map noised this far along the chain (SDEdit; see diffusion.samplers).
    start_strength: float = 1.0
    mixed_precision: bool = True  # bf16 autocast on GPU
    seed: int = 0
    classes: ClassLayout = field(default_factory=lambda: ClassLayout("classes", {}))  # from the cache

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
        "learning_rate": (1e-12, 10.0),
        "weight_decay": (0.0, None),
        "grad_clip": (1e-12, None),
        "ema_decay": (0.0, 1.0),
        "flip_prob": (0.0, 1.0),
        "label_dropout": (0.0, 0.999),
        "start_strength": (0.01, 1.0),
        "seed": (0, SEED_MAX),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
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
