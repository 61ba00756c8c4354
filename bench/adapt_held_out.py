"""``echosynth adapt`` on a scanner of held-out kinds: does a segmenter trained on label maps drawn in the
adapted look work on that scanner's real images?

"My scanner": CAMUS validation images through one fixed chain of degradations that includes the kinds no
translator trains on (``HELD_OUT``: speckle grain, edge enhancement) and a coarser grid and JPEG. The first
half of the validation patients' images (unlabelled) go to ``adapt``; the second half, with their labels
used only to score, is the test set. A segmenter (the downstream recipe, ``evaluation.downstream``) is
trained on N CAMUS training label maps drawn by the base model as it is, in random looks of the
translator's training kinds (``--looks family``: the held-out kinds never among them), by the adapted
model, and on the N real CAMUS training images, and tested on the scanner's test images.

``--zoom`` and ``--opening`` give the scanner another acquisition too (its images and, for scoring, its
labels shown at another depth and sector opening: ``augmentation.acquisition``); the set "family, varied
acquisition" then draws each training map in an acquisition of its own (``--acquisition varied``'s ranges)
as well as a look of its own. ``--sets`` picks the training sets (adapt runs only for "adapted").

    .venv/bin/python bench/adapt_held_out.py --data data/camus224-128 --out runs/adapt-bench

Stages are kept in ``--out`` (a rerun skips what is there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SCANNER_KINDS = ("blur", "speckle", "grey_map", "resample", "sharpen", "compression")
SCANNER_SEED = 2026
SETS = ("real", "base", "family", "family-varied", "adapted")
SET_KEYS = {  # the names results.json has used for them
    "real": "real CAMUS images",
    "base": "{base} as it is",
    "family": "{base} --looks family",
    "family-varied": "{base} --looks family, varied acquisition",
}


def scanner_look(
    images: np.ndarray, labels: np.ndarray, first_seed: int, kinds=SCANNER_KINDS, seed: int = SCANNER_SEED
) -> np.ndarray:
    """Images (N, H, W) in [-1, 1] in the held-out scanner's look (one look, noise per image)."""
    import torch

    from EchoSynthLib.augmentation.degradations import KINDS, SETTINGS_PER_KIND, degrade_fixed

    settings = np.random.default_rng(seed).random((len(KINDS), SETTINGS_PER_KIND))
    x = torch.from_numpy(images[:, None].astype(np.float32))
    inside = torch.from_numpy(labels[:, None] != 0)
    seeds = list(range(first_seed, first_seed + len(images)))
    return degrade_fixed(x, inside, kinds, settings, seeds)[:, 0].numpy()


def scanner_acquisition(images: np.ndarray, labels: np.ndarray, zoom: float, opening: float):
    """Images (N, H, W) in [-1, 1] and their label maps as the scanner acquires them (one depth, one
    sector opening for all)."""
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of
    from EchoSynthLib.data.volume import Volume

    acquisition = Acquisition(zoom, opening)
    shown_images, shown_labels = [], []
    for image, label in zip(images, labels, strict=True):
        label_map = Volume.from_2d(label.astype(np.uint8), (1.0, 1.0))
        grey = Volume.from_2d(np.rint((image + 1.0) * 127.5).clip(0, 255).astype(np.uint8), (1.0, 1.0))
        sector = sector_of(label_map)
        shown_labels.append(acquire(label_map, acquisition, sector, labels=True).array[0])
        shown_images.append(acquire(grey, acquisition, sector, labels=False).array[0] / 127.5 - 1.0)
    return np.stack(shown_images).astype(np.float32), np.stack(shown_labels)


def varied_acquisitions(maps, seed: int):
    """Each prepared map in an acquisition of its own (``--acquisition varied``'s ranges), from ``seed``."""
    from EchoSynthLib.augmentation.acquisition import (
        VARIED_OPENING,
        VARIED_ZOOM,
        acquire,
        random_acquisition,
        sector_of,
    )

    draw = np.random.default_rng(seed)
    return [
        acquire(m, random_acquisition(draw, VARIED_ZOOM, VARIED_OPENING), sector_of(m), labels=True)
        for m in maps
    ]


def drawn_set(generator, cache, entries, seed: int, description: str, acquisitions: bool = False):
    """The generator's image of each entry's label map, on the cache grid, as an ImageSet (``acquisitions``:
    each map first shown in an acquisition of its own)."""
    from EchoSynthLib.evaluation.image_sets import ImageSet
    from EchoSynthLib.inference.generators import generate_for_maps

    maps = [generator.prepare(cache.label_map(e, cache.load(e)[1])) for e in entries]
    if acquisitions:
        maps = varied_acquisitions(maps, seed)
    drawn = generate_for_maps(generator, maps, [1] * len(maps), seed)
    images = np.stack([np.asarray(d[0].array, np.float32).reshape(128, 128) / 127.5 - 1.0 for d in drawn])
    labels = np.stack([np.asarray(m.array).reshape(128, 128) for m in maps])
    return ImageSet(description, images, labels, [e["case_id"] for e in entries])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="a camus224 cache at 128 (prepare --size 128)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base", default="latent-camus128")
    parser.add_argument("--train-maps", type=int, default=200)
    parser.add_argument("--steps", type=int, default=500, help="segmenter steps per run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="segmenter seeds (one run each)")
    parser.add_argument("--scanner-kinds", nargs="+", default=list(SCANNER_KINDS), help="the scanner's look")
    parser.add_argument("--scanner-seed", type=int, default=SCANNER_SEED, help="its settings' seed")
    parser.add_argument("--adapt-only", action="store_true", help="fit the look, skip the segmenters")
    parser.add_argument("--zoom", type=float, default=1.0, help="the scanner's zoom (acquisition)")
    parser.add_argument("--opening", type=float, default=1.0, help="its sector opening (fraction)")
    parser.add_argument(
        "--sets", nargs="+", default=list(SETS), choices=SETS, help="training sets (default: all)"
    )
    args = parser.parse_args()

    from EchoSynthLib.adaptation.adapt import AdaptSettings, adapt
    from EchoSynthLib.data.io import write_image
    from EchoSynthLib.data.volume import Volume
    from EchoSynthLib.evaluation.downstream import DownstreamSettings, _train_and_test, paper_dice
    from EchoSynthLib.evaluation.image_sets import ImageSet, cache_set
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    val, cache = cache_set(f"{args.data}:val", "val")
    patients = sorted({name.split("_")[0] for name in val.names})
    half = set(patients[: len(patients) // 2])
    adapt_rows = [i for i, n in enumerate(val.names) if n.split("_")[0] in half]
    test_rows = [i for i, n in enumerate(val.names) if n.split("_")[0] not in half]
    looked = scanner_look(val.images, val.labels, 0, tuple(args.scanner_kinds), args.scanner_seed)
    scored = val.labels
    if (args.zoom, args.opening) != (1.0, 1.0):
        looked, scored = scanner_acquisition(looked, val.labels, args.zoom, args.opening)
    scanner = args.out / "scanner"
    if not scanner.is_dir():
        scanner.mkdir()
        for i in adapt_rows:
            grey = np.rint((looked[i] + 1.0) * 127.5).clip(0, 255).astype(np.uint8)
            write_image(Volume.from_2d(grey, (1.0, 1.0)), scanner / f"{val.names[i]}.nii.gz")
    model = args.out / "adapted"
    if "adapted" in args.sets and "adapt" not in results:
        began = time.perf_counter()
        adapt(AdaptSettings(scanner, model, args.base, rounds=args.rounds, candidates=args.candidates))
        header = json.loads((model / "config.json").read_text())
        results["adapt"] = {"seconds": round(time.perf_counter() - began), **header["provenance"]["fit"]}
        results["adapt"]["kinds"] = header["settings"]["kinds"]
        results_path.write_text(json.dumps(results, indent=1))
    if args.adapt_only:
        print(json.dumps(results, indent=1))
        return
    test = ImageSet(
        "scanner test", looked[test_rows], scored[test_rows], [val.names[i] for i in test_rows]
    )
    entries = cache.cases("train")[:: max(1, len(cache.cases("train")) // args.train_maps)][: args.train_maps]
    real_train, _ = cache_set(f"{args.data}:train", "train")
    chosen = [real_train.names.index(e["case_id"]) for e in entries]
    sets = {
        "real": lambda: ImageSet(
            "real",
            real_train.images[chosen],
            real_train.labels[chosen],
            [real_train.names[i] for i in chosen],
        ),
        "base": lambda: drawn_set(
            open_generator(GeneratorSettings(args.base, device="cpu")), cache, entries, 0, "base"
        ),
        "family": lambda: drawn_set(
            open_generator(GeneratorSettings(args.base, device="cpu", looks="family")),
            cache,
            entries,
            0,
            "family",
        ),
        "family-varied": lambda: drawn_set(
            open_generator(GeneratorSettings(args.base, device="cpu", looks="family")),
            cache,
            entries,
            0,
            "family, varied acquisition",
            acquisitions=True,
        ),
        "adapted": lambda: drawn_set(
            open_generator(GeneratorSettings(str(model), device="cpu")), cache, entries, 0, "adapted"
        ),
    }
    from EchoSynthLib.evaluation.downstream import _prepared

    drawn = {}
    for seed in args.seeds:
        settings = DownstreamSettings(steps=args.steps, seeds=(seed,))
        for name, make in sets.items():
            if name not in args.sets:
                continue
            key = SET_KEYS.get(name, name).format(base=args.base)
            key = key if seed == 0 else f"{key} (seed {seed})"
            if key in results.get("downstream", {}):
                continue
            began = time.perf_counter()
            train = drawn[name] = drawn.get(name) or make()
            folder = args.out / f"work-{len(results.get('downstream', {}))}"
            predicted = _train_and_test(_prepared(train, "train"), test, settings, seed, folder)
            dice = {k: float(np.nanmean(v)) for k, v in paper_dice(predicted, test.labels).items()}
            results.setdefault("downstream", {})[key] = {
                "dice": dice,
                "training_images": len(train.images),
                "seconds": round(time.perf_counter() - began),
            }
            results_path.write_text(json.dumps(results, indent=1))
            print(key, dice)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
