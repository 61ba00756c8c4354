"""Benchmark: seconds per simulated image (2D 256x256 and 3D 128^3) and per phantom, on this machine.

Run with ``make bench`` (or ``.venv/bin/python bench/simulator_speed.py [--threads N] [--repeats N]``).
Reports the median of the repeats; the first (warm-up) run is not counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


def _median_seconds(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (the target is one core)")
    args = parser.parse_args()
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.simulation import simulate_bmode

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"threads={args.threads}, python {platform.python_version()}"
    )
    for view, size in (("4CH", 256), ("3D", 128)):
        grid = PhantomGrid.for_view(view, size)
        phantom = phantom_label_map(view, "ED", seed=0, grid=grid)
        phantom_s = _median_seconds(
            lambda v=view, g=grid: phantom_label_map(v, "ED", seed=0, grid=g), args.repeats
        )
        simulate_s = _median_seconds(lambda p=phantom: simulate_bmode(p.labels, seed=0), args.repeats)
        shape = "x".join(str(n) for n in phantom.labels.size if n > 1)
        print(f"{view:>4} {shape:>11}: simulate {simulate_s:7.3f} s/image   phantom {phantom_s:7.3f} s")


if __name__ == "__main__":
    main()
