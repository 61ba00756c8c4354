"""A fitted look: a fixed chain of ``augmentation.degradations`` (which kinds, and each kind's settings
as numbers in [0, 1]) that puts a model's images in a scanner's look."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from EchoSynthLib.augmentation.degradations import KINDS, SETTINGS_PER_KIND, check_kinds, degrade_fixed

COMPONENT = "look"  # the package component holding the settings


@dataclass(frozen=True)
class FittedLook:
    """``kinds`` applied in the chain's order, ``settings`` (len(KINDS), SETTINGS_PER_KIND) in [0, 1]."""

    kinds: tuple[str, ...]
    settings: np.ndarray

    def __post_init__(self) -> None:
        check_kinds(self.kinds)
        if np.shape(self.settings) != (len(KINDS), SETTINGS_PER_KIND):
            raise ValueError(f"look settings must be {(len(KINDS), SETTINGS_PER_KIND)}")

    @classmethod
    def plain(cls) -> FittedLook:
        """No degradation at all (the model's own look)."""
        return cls((), np.full((len(KINDS), SETTINGS_PER_KIND), 0.5))

    def with_kinds(self, kinds: tuple[str, ...], settings: np.ndarray | None = None) -> FittedLook:
        """This look with other kinds (kept in the chain's order) and settings."""
        ordered = tuple(kind for kind in KINDS if kind in kinds)
        return FittedLook(ordered, self.settings if settings is None else np.clip(settings, 0.0, 1.0))

    def __call__(self, slices: torch.Tensor, inside: torch.Tensor, seed: int) -> torch.Tensor:
        """Slices (S, 1, H, W) in [-1, 1] in this look; ``seed`` draws the noise fields only."""
        return degrade_fixed(slices, inside, self.kinds, self.settings, [seed] * slices.shape[0])

    def apply(self, images: torch.Tensor, inside: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Images (B, 1, H, W) in [-1, 1] in this look, image b's noise from ``seeds[b]``."""
        return degrade_fixed(images, inside, self.kinds, self.settings, seeds)

    def state(self) -> dict[str, torch.Tensor]:
        """The settings as the package's weights component."""
        return {"settings": torch.from_numpy(np.asarray(self.settings, dtype=np.float32))}

    @classmethod
    def from_state(cls, kinds: tuple[str, ...], state: dict[str, torch.Tensor]) -> FittedLook:
        return cls(tuple(kinds), state["settings"].double().numpy())
