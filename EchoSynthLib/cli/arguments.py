"""Argument parsing shared by the subcommands: NAME=VALUE pairs, number lists, sizes, settings files."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from EchoSynthLib.checks import check_count, check_number, check_seed
from EchoSynthLib.errors import EXIT_ERROR, InputError


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line naming the problem (and where the help is), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        sys.exit(EXIT_ERROR)


def _checked(check, *args, **kwargs):
    try:
        return check(*args, **kwargs)
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seed_argument(text: str) -> int:
    """A --seed value: an integer in 0 .. 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a seed must be an integer, got '{text}'") from None
    return _checked(check_seed, value)


def count_argument(minimum: int = 1):
    """An integer-option parser that accepts ``minimum`` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        return _checked(check_count, value, "the value", minimum)

    return parse


def shard_argument(text: str) -> tuple[int, int]:
    """A --shard value 'K/N': part K (0-based) of N."""
    index, sep, count = text.partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 0/4, got '{text}'") from None
    if not sep or not 0 <= shard[0] < shard[1]:
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got '{text}'")
    return shard


def number_argument(minimum: float | None = None, above: float | None = None):
    """A float-option parser that accepts finite numbers (at least ``minimum``, above ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        return _checked(check_number, value, "the value", minimum=minimum, above=above)

    return parse


def parse_pairs(pairs: list[str], flag: str, kind: type = float) -> list[tuple[str, float]]:
    """NAME=VALUE options as (name, value) pairs, with an error naming the flag."""
    parsed = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            parsed.append((name.strip(), kind(value)))
        except ValueError:
            raise InputError(f"{flag} expects NAME=NUMBER, got '{pair}'") from None
        if not sep or not name.strip():
            raise InputError(f"{flag} expects NAME=NUMBER, got '{pair}'")
    return parsed


def parse_numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated numbers, got '{text}'") from None


def parse_settings(pairs: list[str]) -> dict[str, float]:
    return dict(parse_pairs(pairs, "--set"))


def parse_size(text: str) -> tuple[int, ...]:
    """'128' -> (128, 128); 'WxH' -> (H, W); 'WxHxD' -> (D, H, W): array order (k, j, i)."""
    try:
        sides = [int(part) for part in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N, WxH or WxHxD, got '{text}'") from None
    if len(sides) == 1:
        sides *= 2
    if len(sides) not in (2, 3) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected N, WxH or WxHxD, got '{text}'")
    return tuple(sides[::-1])


def settings_from(args: argparse.Namespace) -> dict[str, object]:
    """--config JSON then --set NAME=VALUE (values parsed as JSON where they can be: 3, 0.5, true, [1,2])."""
    import json

    settings: dict[str, object] = {}
    if args.config is not None:
        try:
            document = json.loads(args.config.read_text())
        except (OSError, ValueError) as error:
            raise InputError(f"{args.config}: cannot read the settings ({error})") from None
        if not isinstance(document, dict):
            raise InputError(f"{args.config}: settings must be a JSON object of NAME: VALUE pairs")
        settings.update(document)
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set expects NAME=VALUE, got '{pair}'")
        try:
            settings[name.strip()] = json.loads(value)
        except ValueError:
            settings[name.strip()] = value
    return settings


def advance_to(bar, fraction: float, total: int) -> None:
    """Move a progress bar that counts whole items (images, maps) to the items done by ``fraction`` of the
    work: never a fractional count such as 55.50000000000001/200; the work's share done (sampler steps
    included) shows as a postfix."""
    done = min(total, int(fraction * total + 1e-6))
    bar.set_postfix_str(f"{min(fraction, 1.0):.1%} of the work", refresh=False)
    if done > bar.n:
        bar.update(done - bar.n)


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that computes: ``--threads N``, CPU threads for its compute (default:
    ECHOSYNTH_THREADS, OMP_NUM_THREADS, else one core left free; ``EchoSynthLib.cpu_threads``), and
    ``--accept-licence``: a model it names that is listed but not installed is downloaded without asking
    (``EchoSynthLib.store.downloads``)."""
    parser.add_argument(
        "--threads",
        type=count_argument(1),
        default=None,
        help="CPU threads to compute on (default: $ECHOSYNTH_THREADS, else all cores but one)",
    )
    add_licence_argument(parser)


def add_licence_argument(parser: argparse.ArgumentParser) -> None:
    """``--accept-licence``: accept the licence of a model downloaded on first use, without a prompt."""
    parser.add_argument(
        "--accept-licence",
        action="store_true",
        help="download a listed model that is not installed without asking (its licence accepted)",
    )


def add_acquisition_argument(parser: argparse.ArgumentParser) -> None:
    """``--acquisition same|varied``: how new anatomies are acquired."""
    from EchoSynthLib.inference.options import ACQUISITION_HELP, ACQUISITIONS

    parser.add_argument("--acquisition", choices=ACQUISITIONS, default=ACQUISITIONS[0], help=ACQUISITION_HELP)
