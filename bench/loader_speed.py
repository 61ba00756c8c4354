"""Benchmark: training-cache throughput (samples per second) through the PyTorch loader, and prepare speed.

Without ``--cache`` a phantom dataset is simulated into a temporary folder and prepared first (that
preparation is timed too). Run with ``make bench`` or
``.venv/bin/python bench/loader_speed.py [--cache CACHE] [--workers 0 2] [--batch 16] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def _phantom_cache(folder: Path, cases: int, size: int) -> Path:
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.cache.store import build_cache
    from EchoSynthLib.data.io import write_image, write_label_map
    from EchoSynthLib.datasets import scan_dataset
    from EchoSynthLib.preprocessing.prepare import PrepareSettings
    from EchoSynthLib.simulation import simulate_bmode

    raw = folder / "raw"
    raw.mkdir()
    grid = PhantomGrid.for_view("4CH", size=256)
    for index in range(cases):
        phantom = phantom_label_map("4CH", ("ED", "ES")[index % 2], seed=index // 2, grid=grid)
        write_image(
            simulate_bmode(phantom.labels, seed=index), raw / f"pt{index // 2:03d}_{index % 2}.nii.gz"
        )
        write_label_map(phantom.labels, raw / f"pt{index // 2:03d}_{index % 2}_label.nii.gz")
    start = time.perf_counter()
    build_cache(scan_dataset("folder", raw), folder / "cache", PrepareSettings(size=(size, size)))
    seconds = time.perf_counter() - start
    print(
        f"prepare: {cases} cases 256x256 -> {size}x{size} in {seconds:.2f} s ({cases / seconds:.1f} cases/s)"
    )
    return folder / "cache"


def _samples_per_second(dataset, batch: int, workers: int, epochs: int) -> float:
    from EchoSynthLib.cache.dataset import make_loader

    loader = make_loader(dataset, batch, workers=workers, seed=0, drop_last=False)
    for _ in loader:  # warm-up epoch (worker start, page cache)
        pass
    start = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for sample in loader:
            count += sample["image"].shape[0]
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, help="an existing cache (default: a simulated phantom one)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--cases", type=int, default=96, help="phantom cases to simulate without --cache")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()

    import torch

    from EchoSynthLib.augmentation import paired_augmentation
    from EchoSynthLib.cache.dataset import CachedPairs

    torch.set_num_threads(1)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        cache = args.cache or _phantom_cache(Path(scratch), args.cases, args.size)
        plain = CachedPairs(cache, args.split, one_hot=True)
        shape = "x".join(str(n) for n in plain[0]["image"].shape[1:])
        print(f"cache: {cache} ({args.split}, {len(plain)} cases, {shape})")
        for augment in (False, True):
            transform = paired_augmentation(spatial_dims=len(shape.split("x"))) if augment else None
            dataset = CachedPairs(cache, args.split, one_hot=True, transform=transform)
            for workers in args.workers:
                rate = _samples_per_second(dataset, args.batch, workers, args.epochs)
                label = "paired augmentation" if augment else "no augmentation"
                print(f"batch {args.batch}, workers {workers}, {label:>19}: {rate:8.0f} samples/s")


if __name__ == "__main__":
    main()
