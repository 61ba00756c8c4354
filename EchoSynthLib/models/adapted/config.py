"""Settings of an adapted model: which model it draws with and the look it puts its images in (the look's
numbers are the package's one weights component, ``look.safetensors``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from EchoSynthLib.augmentation.degradations import check_kinds
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError


@dataclass(frozen=True)
class AdaptedConfig(SettingsMixin):
    """``base``: the label map -> image model the images are drawn with (an installed name, or a folder);
    ``base_identity``: its components' SHA-256 prefixes (a different model under that name is refused);
    ``kinds``: the degradations of the look, in the chain's order; ``image_size``: the grid the look was
    fitted on (its blur and grain sizes are in pixels of that grid)."""

    base: str = "latent-camus128"
    base_identity: str = "simulator"
    kinds: tuple[str, ...] = ()
    image_size: int = 128

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {"image_size": (16, 1024)}

    def __post_init__(self) -> None:
        super().__post_init__()
        check_kinds(self.kinds)
        if not self.base:
            raise InputError("an adapted model needs the model it draws with (base)")
