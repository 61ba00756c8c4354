"""How many CPU threads EchoSynth's compute uses: one policy for the command line, the Python API and the
Slicer module's worker process.

- The count: ``--threads N`` (or ``threads=`` in Python), else ``ECHOSYNTH_THREADS``, else
  ``OMP_NUM_THREADS`` if the user set it, else one core is left free: the cores this process may run on,
  less one, at least one (the rule of 3D Slicer's AI extensions: Slicer's GUI, or the user's other job,
  keeps a core).
- OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE``, unless the user set it) instead of spinning
  for the next parallel region: spinning threads of two processes fight for the same cores, which made a
  synthesis next to a training run 4.3x slower (docs/BENCHMARKS.md, ``bench/contention.py``). The OpenMP
  runtime reads it when it starts, so ``prepare_environment`` runs before torch is imported (the command
  line and the worker do that first).
"""

from __future__ import annotations

import os
import sys

from EchoSynthLib.checks import check_count
from EchoSynthLib.errors import InputError

THREADS_ENV = "ECHOSYNTH_THREADS"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system tells it, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def thread_count(threads: int | None = None) -> int:
    """The number of threads to use (see the module docstring for the order of the sources)."""
    if threads is not None:
        return check_count(threads, "--threads", 1)
    for variable in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(variable, "").strip()
        if text:
            try:
                return check_count(int(text), variable, 1)
            except ValueError:
                raise InputError(f"{variable} must be a whole number of threads, got '{text}'") from None
    return max(1, available_cores() - 1)


def prepare_environment() -> None:
    """Before torch is imported: OpenMP threads wait passively unless the user chose otherwise."""
    os.environ.setdefault(WAIT_POLICY_ENV, "PASSIVE")


def use_threads(threads: int | None = None) -> int:
    """Run the compute (torch, and the OpenMP and BLAS libraries under it) on ``thread_count(threads)``
    threads; returns the count. Torch is not imported for it (the simulator's path runs without torch): the
    count goes into the environment, which torch reads when it is imported, and to torch itself if it
    already is."""
    count = thread_count(threads)
    prepare_environment()
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)
    return count
