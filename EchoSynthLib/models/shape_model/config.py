"""Settings of a statistical shape model of label maps (the ``shape-model`` family)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.engine.settings import SettingsMixin

RUN_DEFAULTS = {"max_steps": 1}  # one fit: the shape model is a principal component analysis


@dataclass(frozen=True)
class ShapeModelConfig(SettingsMixin):
    """What defines a shape model and how it draws: the grid its shapes live on, the variance kept, how far
    from the mean a heart is drawn, and the label map -> image model that draws each map's image."""

    grid: int = 64  # the signed distances of every region on grid x grid (the shapes are smooth)
    variance: float = 0.95  # share of the training hearts' variance kept (the number of modes follows)
    band: float = 0.0  # > 0: signed distances clipped to +/- this many grid pixels (``distances``)
    truncation: float = 2.5  # each mode's coefficient is drawn within +/- this many standard deviations
    minimum: float = 0.0  # > 0: every heart region of a drawn map covers at least this share of it
    image_model: str = "latent-camus128"  # draws the image of each map ('simulator' or a model)
    # The output grid (the training cache's): rows, columns and spacing of every map and image.
    image_shape: tuple[int, ...] = (128, 128)
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
    views: tuple[str, ...] = ()  # one model per view (the cache's, e.g. 2CH and 4CH)
    seed: int = 0

    MAY_BE_EMPTY: ClassVar[frozenset[str]] = frozenset({"views"})
    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "grid": (16, 512),
        "variance": (0.5, 1.0),
        "band": (0.0, None),
        "truncation": (0.1, 10.0),
        "minimum": (0.0, 0.2),
        "image_shape": (8, None),
        "spacing": (1e-6, None),
        "seed": (0, SEED_MAX),
    }
