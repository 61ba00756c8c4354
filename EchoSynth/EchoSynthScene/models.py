"""What the Generator list offers: the simulator, models shipped with the extension and models in the
user's cache (``EchoSynthLib.models.registry``), plus any model folder the user picks."""

from __future__ import annotations

from dataclasses import dataclass

from EchoSynthLib.sampling.generators import SIMULATOR


@dataclass(frozen=True)
class GeneratorChoice:
    """One entry of the Generator list: its label, and the spec the worker opens."""

    label: str
    spec: str


def generator_choices() -> list[GeneratorChoice]:
    """The simulator first, then every installed model (bundled, then cached)."""
    from EchoSynthLib.models.registry import installed_models

    choices = [GeneratorChoice("Simulator (training-free, 2D and 3D)", SIMULATOR)]
    for model in installed_models():
        label = f"{model.name} {model.version} ({model.source}, {model.kind})"
        choices.append(GeneratorChoice(label, str(model.path)))
    return choices
