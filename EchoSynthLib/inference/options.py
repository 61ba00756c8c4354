"""The sampling options, declared once: the command line's flags, the job file's keys, the Slicer panel's
parameters and the checks of ``GeneratorSettings`` all come from ``SAMPLING_OPTIONS`` (torch-free).

Each family says which of them it uses (``Family.sampling`` in ``models.families``); the others are
ignored by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from EchoSynthLib.checks import check_count, check_number
from EchoSynthLib.data.planes import PLANES, VOLUME
from EchoSynthLib.diffusion import DEFAULT_SAMPLER, SAMPLERS
from EchoSynthLib.errors import InputError


@dataclass(frozen=True)
class SamplingOption:
    """One option: its key (job file, ``GeneratorSettings``), command-line flag, panel parameter, type,
    default, range or choices, and help. ``unset`` is the panel's stand-in for None (a spin box cannot be
    empty) where None means "the default" (the middle slice)."""

    name: str
    flag: str
    panel: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    unset: Any = None
    every_generator: bool = False  # applied to every generator's images (not a family's own sampling)

    def check(self, value: Any) -> Any:
        """``value`` if it is valid for this option; an InputError naming the option otherwise."""
        what = self.flag.lstrip("-")
        if value is None and self.default is None:
            return value
        if self.choices:
            if value not in self.choices:
                raise InputError(f"unknown {what} '{value}' (known: {', '.join(self.choices)})")
        elif self.kind is int:
            maximum = None if self.maximum is None else int(self.maximum)
            check_count(value, what, int(self.minimum or 0), maximum)
        else:
            check_number(value, what, minimum=self.minimum, maximum=self.maximum)
        return value

    def from_panel(self, value: Any) -> Any:
        """The option's value from its panel parameter (``unset`` -> None)."""
        return None if self.unset is not None and value == self.unset else value


SAMPLING_OPTIONS: tuple[SamplingOption, ...] = (
    SamplingOption("steps", "--steps", "steps", int, 25, "sampling steps", minimum=1, maximum=1000),
    SamplingOption(
        "sampler", "--sampler", "sampler", str, DEFAULT_SAMPLER, "diffusion sampler", choices=SAMPLERS
    ),
    SamplingOption(
        "guidance_scale",
        "--guidance",
        "guidanceScale",
        float,
        1.0,
        "classifier-free guidance scale (1: off)",
        minimum=0.0,
        maximum=20.0,
    ),
    SamplingOption(
        "plane",
        "--plane",
        "plane",
        str,
        PLANES[0],
        "plane of a 3D map for a 2D model; 'volume': every ij plane with the image's seed, stacked into a 3D "
        "image on the map's grid",
        choices=(*PLANES, VOLUME),
    ),
    SamplingOption(
        "slice_index",
        "--slice",
        "sliceIndex",
        int,
        None,
        "slice index across that plane (default: the middle)",
        minimum=0,
        maximum=10_000,
        unset=-1,
    ),
    SamplingOption(
        "strength",
        "--strength",
        "strength",
        float,
        None,
        "below 1: start from the simulator's image of the map, noised this far along the chain, and re-draw "
        "its texture (1: from pure noise; default: the model's own)",
        minimum=0.01,
        maximum=1.0,
        unset=0.0,
    ),
    SamplingOption(
        "looks",
        "--looks",
        "looks",
        str,
        "none",
        "give each image a scanner look of its own, drawn from its seed: a chain of degradations "
        "(blur, speckle grain, depth gain, grey map, resampling, haze, noise, edge enhancement, JPEG); "
        "'family': the kinds a translator trains on, 'all': every kind (varied data for training a "
        "model that must work on other scanners)",
        choices=("none", "family", "all"),
        every_generator=True,
    ),
)
OPTIONS_BY_NAME = {option.name: option for option in SAMPLING_OPTIONS}

# How new anatomies (``--augment``) are acquired: 'same' (the map's own depth and sector) or 'varied' (each
# at a depth/zoom and sector opening of its own): the keys of ``augmentation.labelmaps.ACQUISITIONS``,
# named here without importing MONAI (a test holds the two equal).
ACQUISITIONS = ("same", "varied")
ACQUISITION_HELP = (
    "'varied': show each new anatomy as another acquisition would, at an imaging depth (zoom 0.75 to 1.3) "
    "and sector opening (65 to 100 %%) of its own (default 'same': the map's own)"
)


def sampling_option(name: str) -> SamplingOption:
    """The option called ``name``."""
    return OPTIONS_BY_NAME[name]


def add_sampling_arguments(parser: Any, names: tuple[str, ...] | None = None) -> None:
    """Add the options (all, or ``names``) to an argparse parser, as ``dest=name``."""
    import argparse

    def parse_as(option: SamplingOption):
        def parse(text: str) -> Any:
            try:
                return option.check(option.kind(text))
            except (InputError, ValueError) as error:
                raise argparse.ArgumentTypeError(str(error) or f"bad value '{text}'") from None

        return parse

    for option in SAMPLING_OPTIONS:
        if names is not None and option.name not in names:
            continue
        default = "" if option.default is None else f" (default {option.default})"
        if option.choices:
            parser.add_argument(
                option.flag, dest=option.name, default=option.default, choices=option.choices,
                help=option.help + default,
            )  # fmt: skip
        else:
            parser.add_argument(
                option.flag, dest=option.name, default=option.default, type=parse_as(option),
                help=option.help + default,
            )  # fmt: skip


def sampling_values(source: Any, names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The options' values read from ``source`` by name (an argparse namespace, a settings object)."""
    return {o.name: getattr(source, o.name) for o in SAMPLING_OPTIONS if names is None or o.name in names}
