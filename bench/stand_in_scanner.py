"""Export a cache split as a stand-in second scanner's images: each real image given the stand-in look
(``EchoSynthLib.augmentation.scanner_look``: coarser speckle, another dynamic range and gain), on its cache
grid, with its label map, for measuring translation back to the real scanner's look (issue 15). A stand-in,
not a real second scanner.

Writes ``OUT/images/CASE.nii.gz`` (uint8) and ``OUT/labels/CASE.nii.gz`` (canonical labels), staged.
``--look unseen`` gives them a look outside the family a source-guided model trains on
(``scanner_look.UNSEEN``); ``--look family`` a random chain of the training kinds of degradation
(``FAMILY``: the chain's training kinds but the five-number looks, seeded by the case's position) and
``--look held-out`` the same with every held-out kind (``HELD_OUT``, never drawn in training) applied on
top: a kind never seen.
``--look scanner-a`` is the held-out-kinds scanner of ``bench/adapt_held_out.py`` (one fixed look;
``scanner-b`` its in-family scanner: ``--scanner-kinds tgc resample haze noise compression
--scanner-seed 7``), for its test patients only (the second half; the first half's images are what
``adapt`` learns the look from).
``--look none`` writes the real images as they are: the truth a translation of the stand-in is compared
with (``echosynth evaluate --paired-with``), or, from a smaller
cache, the real images on a model's grid (the distance a model of that grid cannot go below).

    python bench/stand_in_scanner.py --data data/camus224-128 --split val --out out/bench-translate/standin
    python bench/stand_in_scanner.py --data data/camus224-128 --split val --look none \
        --out out/bench-translate/real128
    python bench/stand_in_scanner.py --data data/camus224-128 --split val --look unseen \
        --out out/bench-translate/unseen
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHAIN_SEEDS = 10_000  # case i's chain of degradations is drawn from seed CHAIN_SEEDS + i
# The family look as measured in docs/BENCHMARKS.md: the chain's training kinds before ``scanner_look`` (the
# five-number looks are measured on their own: --look stand-in / unseen).
FAMILY = ("blur", "tgc", "grey_map", "resample", "haze", "noise", "compression")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument(
        "--look",
        choices=["stand-in", "unseen", "family", "held-out", "scanner-a", "scanner-b", "none"],
        default="stand-in",
        help="unseen: a look outside the training family (scanner_look.UNSEEN); family / held-out: a seeded"
        " chain of the training degradations, without / with the held-out kinds; none: the real images",
    )
    args = parser.parse_args()

    import numpy as np
    import torch

    from EchoSynthLib.augmentation.degradations import HELD_OUT, degrade
    from EchoSynthLib.augmentation.scanner_look import STAND_IN, UNSEEN
    from EchoSynthLib.cache.store import CacheIndex
    from EchoSynthLib.data.atomic import staged_directory
    from EchoSynthLib.data.io import write_image, write_label_map
    from EchoSynthLib.data.labels import Structure

    cache = CacheIndex.open(args.data)
    entries = cache.cases(args.split)[: args.limit]
    positions = list(range(len(entries)))
    if args.look in ("scanner-a", "scanner-b"):  # its test patients (adapt_held_out's split)
        patients = sorted({e["case_id"].split("_")[0] for e in entries})
        fit_half = set(patients[: len(patients) // 2])
        positions = [i for i, e in enumerate(entries) if e["case_id"].split("_")[0] not in fit_half]
    with staged_directory(args.out) as staging:
        for position in positions:
            entry = entries[position]
            image, labels = cache.load(entry)
            label_map = cache.label_map(entry, labels)
            inside = torch.from_numpy(label_map.array != Structure.BACKGROUND.label)[None]
            looked = torch.from_numpy(np.asarray(image, np.float32)).reshape(inside.shape)
            look = {"stand-in": STAND_IN, "unseen": UNSEEN}.get(args.look)  # none: the real image
            if look is not None:
                looked = look(looked, inside)
            elif args.look in ("scanner-a", "scanner-b"):
                from adapt_held_out import scanner_look

                kinds = {"scanner-b": (("tgc", "resample", "haze", "noise", "compression"), 7)}
                scanner = kinds.get(args.look, ())
                grey = scanner_look(looked.numpy()[0], label_map.array, position, *scanner)
                looked = torch.from_numpy(grey)
            elif args.look in ("family", "held-out"):
                always = HELD_OUT if args.look == "held-out" else ()
                looked = degrade(looked, inside, [CHAIN_SEEDS + position], FAMILY, always)
            grey = np.rint((looked.numpy().reshape(label_map.array.shape) + 1.0) * 127.5).astype(np.uint8)
            write_image(label_map.with_array(grey), staging / "images" / f"{entry['case_id']}.nii.gz")
            write_label_map(label_map, staging / "labels" / f"{entry['case_id']}.nii.gz")
    what = "real" if args.look == "none" else args.look
    print(f"{len(positions)} {what} images and their label maps in {args.out}")


if __name__ == "__main__":
    main()
