"""Settings of the latent diffusion models (saved with every run and package; how a run goes is
``RunSettings``). One config for both tasks and both dimensions: ``conditioned`` picks label-conditioned
synthesis (SPADE U-Net, image-only autoencoder) or DIFF-3's paired generation (plain U-Net, autoencoder on
image + label channels); ``spatial_dims`` follows the autoencoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError

RUN_DEFAULTS: dict[str, Any] = {
    "max_steps": 50_000,
    "val_every": 500,
    "sample_every": 2000,
    "checkpoint_every": 500,
}
CONDITIONINGS = ("spade", "controlnet")  # how a label-conditioned denoiser takes its map (network.py)
PROCESSES = ("ddpm", "rflow")  # noise prediction on a beta schedule, or rectified flow (flow matching)
NO_AUTOENCODER = "none"


@dataclass(frozen=True)
class LatentConfig(SettingsMixin):
    """Network, noise process and recipe of a latent diffusion model; the fields from ``spatial_dims`` to
    ``autoencoder_settings`` are filled by the trainer from the cache and the autoencoder."""

    conditioned: bool = True
    autoencoder: str = NO_AUTOENCODER  # the autoencoder package (folder or installed name) a run starts from
    # Network: MONAI's (SPADE)DiffusionModelUNet on the latents. The default (3.5 M parameters with SPADE)
    # trains at about 1 s per batch of 16 32x32 latents on one CPU thread; give GPUs wider channels.
    conditioning: str = "spade"  # or "controlnet" (both MONAI; see network.py and docs/BENCHMARKS.md)
    channels: tuple[int, ...] = (32, 64, 128)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    spade_channels: int = 32  # SPADE's hidden channels; ControlNet: its map embedding's first width
    norm_groups: int = 32
    # Noise process: DDPM with T = 1000 on the scaled-linear betas 0.0015..0.0195 of latent diffusion (and
    # MONAI's tutorials); DIFF-3 used a sigmoid schedule (schedule=sigmoid_beta).
    process: str = "ddpm"
    timesteps: int = 1000
    schedule: str = "scaled_linear_beta"
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    # Training recipe.
    batch_size: int = 16  # the global batch of a step, over every process under torchrun
    learning_rate: float = 1e-4
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    label_dropout: float = 0.0  # > 0 trains for classifier-free guidance (conditioned models)
    mixed_precision: bool = True  # bf16 autocast on GPU
    seed: int = 0
    # Sampling default of a label-conditioned model (``--strength`` overrides): 1 starts from pure noise;
    # below 1 from the autoencoder's latent of the simulator's image of the map, noised that far (SDEdit).
    start_strength: float = 1.0
    # From the data and the autoencoder.
    spatial_dims: int = 2
    image_shape: tuple[int, ...] = (128, 128)  # (rows, cols) or (slices, rows, cols)
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)  # mm, (x, y, z) of the training grid: generated pairs
    latent_channels: int = 4
    downsampling: int = 4
    scale_factor: float = 1.0  # 1 / std of the training latents, as DIFF-3 and Stable Diffusion scale them
    latent_clip: float = 0.0  # the largest |scaled training latent|: sampling keeps x_0 within it (0: off)
    classes: ClassLayout = field(default_factory=lambda: ClassLayout("classes", {}))
    autoencoder_settings: dict = field(default_factory=dict)

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "channels": (1, None),
        "num_res_blocks": (1, None),
        "num_head_channels": (1, None),
        "spade_channels": (1, None),
        "norm_groups": (1, None),
        "timesteps": (2, None),
        "beta_start": (0.0, 1.0),
        "beta_end": (0.0, 1.0),
        "batch_size": (1, None),
        "learning_rate": (1e-12, 10.0),
        "grad_clip": (1e-12, None),
        "ema_decay": (0.0, 1.0),
        "label_dropout": (0.0, 1.0),
        "seed": (0, SEED_MAX),
        "start_strength": (0.01, 1.0),
        "spatial_dims": (2, 3),
        "image_shape": (1, None),
        "spacing": (1e-9, None),
        "latent_channels": (1, None),
        "downsampling": (1, None),
        "scale_factor": (1e-9, None),
        "latent_clip": (0.0, None),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.autoencoder_settings:  # in full, so that an autoencoder setting added later compares equal
            from EchoSynthLib.models.autoencoder.config import AutoencoderConfig

            full = AutoencoderConfig.from_dict(self.autoencoder_settings).as_dict()
            object.__setattr__(self, "autoencoder_settings", full)
        if self.process not in PROCESSES:
            raise InputError(f"setting process must be one of {', '.join(PROCESSES)}, got '{self.process}'")
        if self.conditioning not in CONDITIONINGS:
            raise InputError(
                f"setting conditioning must be one of {', '.join(CONDITIONINGS)}, got '{self.conditioning}'"
            )
        if self.start_strength < 1.0 and not self.conditioned:
            raise InputError("start_strength below 1 needs a label-conditioned model (a map to start from)")
        if self.conditioning == "controlnet" and self.downsampling & (self.downsampling - 1):
            raise InputError(
                f"conditioning=controlnet needs a power-of-two downsampling, got {self.downsampling}"
            )
        if len(self.attention_levels) != len(self.channels):
            raise InputError("settings channels and attention_levels need one entry per level each")
        if any(c % self.norm_groups for c in self.channels):
            raise InputError(f"every channel count must be a multiple of norm_groups={self.norm_groups}")

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(channels, *spatial) of one latent."""
        return (self.latent_channels, *(n // self.downsampling for n in self.image_shape))
