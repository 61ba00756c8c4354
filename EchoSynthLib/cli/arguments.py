"""Argument parsing shared by the subcommands: NAME=VALUE pairs, number lists, sizes, settings files."""

from __future__ import annotations

import argparse

from EchoSynthLib.errors import InputError


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
            settings.update(json.loads(args.config.read_text()))
        except (OSError, ValueError) as error:
            raise InputError(f"{args.config}: cannot read the settings ({error})") from None
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set expects NAME=VALUE, got '{pair}'")
        try:
            settings[name.strip()] = json.loads(value)
        except ValueError:
            settings[name.strip()] = value
    return settings
