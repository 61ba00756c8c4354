"""Adapted models (``echosynth adapt``): a label map -> image model whose images are put in the look of the
user's scanner, fitted from unlabelled images of it (``models.adapted.look``; the fitting is
``EchoSynthLib.adaptation``). The package holds the look and names the model it draws with; nothing heavy
is imported here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from EchoSynthLib.inference.generators import Generator, GeneratorSettings, Warn


def build_generator(folder: str | Path, settings: GeneratorSettings, warn: Warn | None = None) -> Generator:
    """The base model's generator (with ``settings``' sampling options), its images in the fitted look."""
    from dataclasses import fields

    from EchoSynthLib.inference.generators import GeneratorSettings, LookedGenerator, open_generator
    from EchoSynthLib.models.adapted.config import AdaptedConfig
    from EchoSynthLib.models.adapted.look import COMPONENT, FittedLook
    from EchoSynthLib.store.families import ADAPTED
    from EchoSynthLib.store.package import read_package_config, read_weights

    config = AdaptedConfig.from_dict(read_package_config(folder, ADAPTED.kind))
    look = FittedLook.from_state(config.kinds, read_weights(folder, COMPONENT), config.image_size)
    check_base(config)
    values = {f.name: getattr(settings, f.name) for f in fields(GeneratorSettings)}
    base = open_generator(GeneratorSettings(**{**values, "generator": config.base, "looks": "none"}), warn)
    kinds = ", ".join(config.kinds) or "no degradation"
    return LookedGenerator(base, look, f"in the look adapted to {Path(folder).name} ({kinds})")


def base_identity(base: str) -> str:
    """The identity of a base model (``store.package.package_identity``; the simulator's is its name)."""
    from EchoSynthLib.inference.generators import SIMULATOR
    from EchoSynthLib.store.package import package_identity
    from EchoSynthLib.store.registry import resolve_model

    return SIMULATOR if base == SIMULATOR else package_identity(resolve_model(base))


def check_base(config) -> None:
    """InputError unless the base model is installed as the one the look was fitted to."""
    from EchoSynthLib.errors import InputError

    if base_identity(config.base) != config.base_identity:
        raise InputError(
            f"the model '{config.base}' is not the one this look was fitted to (its weights differ); "
            "adapt again with the installed one"
        )
