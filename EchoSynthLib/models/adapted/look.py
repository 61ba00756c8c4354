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
    grid: int = 0  # the side of the grid it was fitted on (0: none; its blur and grain are in its pixels)

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
        """Slices (S, 1, H, W) in [-1, 1] in this look; ``seed`` draws the noise fields only. Images on
        another grid than the fitted one are taken to its scale (the longer side ``grid`` pixels) and back,
        so that blur and speckle grain keep their size relative to the image."""
        size = tuple(slices.shape[-2:])
        scale = self.grid / max(size) if self.grid else 1.0
        if abs(scale - 1.0) < 1e-6:
            return degrade_fixed(slices, inside, self.kinds, self.settings, [seed] * slices.shape[0])
        fitted = tuple(max(8, round(n * scale)) for n in size)
        resize = torch.nn.functional.interpolate
        small = resize(slices, size=fitted, mode="bilinear", antialias=True, align_corners=False)
        mask = resize(inside.float(), size=fitted, mode="nearest") > 0.5
        looked = degrade_fixed(small, mask, self.kinds, self.settings, [seed] * slices.shape[0])
        back = resize(looked, size=size, mode="bilinear", align_corners=False)
        return torch.where(inside, back, torch.full_like(back, -1.0))

    def apply(self, images: torch.Tensor, inside: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Images (B, 1, H, W) in [-1, 1] in this look, image b's noise from ``seeds[b]``."""
        return degrade_fixed(images, inside, self.kinds, self.settings, seeds)

    def state(self) -> dict[str, torch.Tensor]:
        """The settings as the package's weights component."""
        return {"settings": torch.from_numpy(np.asarray(self.settings, dtype=np.float32))}

    @classmethod
    def from_state(cls, kinds: tuple[str, ...], state: dict[str, torch.Tensor], grid: int = 0) -> FittedLook:
        return cls(tuple(kinds), state["settings"].double().numpy(), grid)
