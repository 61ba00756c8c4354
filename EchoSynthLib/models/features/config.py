"""Settings of the echo encoder (saved with every run and package; how a run goes is ``RunSettings``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError

# A CPU-sized run: 4,000 steps of 64 pairs, about 45 minutes on one core (docs/BENCHMARKS.md).
RUN_DEFAULTS: dict[str, Any] = {"max_steps": 4000, "val_every": 500, "checkpoint_every": 500}


@dataclass(frozen=True)
class EncoderConfig(SettingsMixin):
    """The encoder network and its contrastive training recipe.

    Two views of an image are random ``crop``-pixel crops of it at different places (no resizing, so the
    speckle keeps its size), flipped at random: what they share is the scanner's texture, speckle and grey
    levels more than the anatomy under them, so the features learn to tell those apart."""

    channels: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    projection: int = 128  # projection head width (training only; features are the pooled ResNet output)
    crop: int = 64
    temperature: float = 0.2
    batch_size: int = 64  # image pairs per step
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "channels": (1, None),
        "blocks": (1, None),
        "projection": (1, None),
        "crop": (16, None),
        "temperature": (1e-3, 10.0),
        "batch_size": (2, None),
        "learning_rate": (1e-12, 10.0),
        "weight_decay": (0.0, None),
        "seed": (0, SEED_MAX),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.channels) != 4 or len(self.blocks) != 4:
            raise InputError("channels and blocks need 4 entries, one per stage of MONAI's ResNet")

    @property
    def features(self) -> int:
        """Width of the feature vector."""
        return self.channels[-1]
