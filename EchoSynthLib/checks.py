"""Checks of user-given values, each with an InputError that names the value: seeds, counts, numbers, and
the memory and disk a job will need (output paths: ``data.outputs``).

One rule for seeds everywhere (CLI and API, simulator and models): an integer in 0 .. 2**32 - 1, and
image k of a run uses seed + k, so the last seed must fit too.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from EchoSynthLib.errors import InputError

SEED_MAX = 2**32 - 1


def check_seed(seed: object, count: int = 1, name: str = "seed") -> int:
    """``seed`` as an int, if it and ``seed + count - 1`` are integers in 0 .. 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"{name} must be an integer in 0..{SEED_MAX}, got {seed!r}")
    seed = int(seed)
    if not 0 <= seed <= SEED_MAX:
        raise InputError(f"{name} must be an integer in 0..{SEED_MAX}, got {seed}")
    if seed + count - 1 > SEED_MAX:
        raise InputError(f"{name} {seed} + {count} images runs past the largest seed, {SEED_MAX}")
    return seed


def check_count(value: object, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``minimum`` .. ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if maximum is not None and not minimum <= value <= maximum:
        raise InputError(f"{name} must be in {minimum}..{maximum}, got {value}")
    if value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}")
    return value


def check_number(
    value: object,
    name: str,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> float:
    """``value`` as a finite float, at least ``minimum``, at most ``maximum``, greater than ``above``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise InputError(f"{name} must be at most {maximum:g}, got {value:g}")
    if above is not None and value <= above:
        raise InputError(f"{name} must be greater than {above:g}, got {value:g}")
    return value


def available_memory() -> int:
    """Bytes of memory available to a new allocation (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # no sysconf (Windows): do not refuse
        return 1 << 62


def check_memory(needed: float, what: str) -> None:
    """InputError naming the figure when ``needed`` bytes exceed the memory this machine has available."""
    available = available_memory()
    if needed > available:
        raise InputError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory; {available / 2**30:.1f} GiB is available"
        )


def check_disk(folder: str | os.PathLike, needed: float, what: str) -> None:
    """InputError naming the figures when ``needed`` bytes exceed the free space where ``folder`` is (or
    would be created)."""
    import shutil

    place = Path(folder).absolute()
    while not place.exists() and place != place.parent:
        place = place.parent
    try:
        free = shutil.disk_usage(place).free
    except OSError:  # cannot tell: do not refuse
        return
    if needed > free:
        raise InputError(
            f"{what} needs about {needed / 2**30:.1f} GiB of disk in {folder}; {free / 2**30:.1f} GiB is free"
        )
