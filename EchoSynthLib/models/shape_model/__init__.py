"""New anatomies (the ``shape-model`` family: nothing in, image + label map out): a statistical shape model
of label maps fitted to a dataset's training maps, per view and with ED and ES together (``fit``: the maps
as signed distances, ``distances``; principal components by scikit-learn), whose new hearts' images a
label map -> image model draws (``pipeline``). The entry points below are the family's for
``store.families``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from EchoSynthLib.models.shape_model.fit import ShapeFit
    from EchoSynthLib.models.shape_model.pipeline import ShapeModel


def build_trainer(data: str | Path, run: str | Path, settings: dict[str, Any], device: str) -> ShapeFit:
    """The fit of a 2D cache's training maps (one step; ``device`` unused: the fit is numpy)."""
    from EchoSynthLib.engine.settings import split_settings
    from EchoSynthLib.models.shape_model.config import RUN_DEFAULTS, ShapeModelConfig
    from EchoSynthLib.models.shape_model.fit import ShapeFit

    del device
    values, run_settings = split_settings(settings, ShapeModelConfig, RUN_DEFAULTS)
    return ShapeFit(data, run, ShapeModelConfig.from_dict(values), run_settings)


def open_model(folder: str | Path, device: str = "auto", warn=None) -> ShapeModel:
    """The shape model in ``folder`` (a folder or an installed name), loaded."""
    from EchoSynthLib.models.shape_model.pipeline import ShapeModel

    return ShapeModel.load(folder, device, warn)
