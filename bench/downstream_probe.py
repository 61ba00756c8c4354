"""The synthetic-only downstream check alone, in about 100 s (issue 34): is a folder of generated images
(with their label maps) useful to train a segmenter, and if not, what do its segmenters get wrong?

    python bench/downstream_probe.py --synthetic out/bench-gen224/lat-dpm++sde-25 \
        --labels out/bench-gen224/maps-train --transforms none blur=3 speckle=2 right-heart

The recipe is ``echosynth evaluate --downstream --downstream-steps 300 --seeds 0``'s synthetic-only row
(the same segmenter, steps, seed and real test split; the full evaluate also trains the real-only,
real + synthetic and shuffled-label rows, 4x the time). Each ``--transforms`` entry is a control applied to
the prepared images before training (``none``; ``blur=S``: Gaussian blur of S px; ``speckle=S``:
multiplicative fully developed speckle, a complex Gaussian field smoothed by S x S/2 px; ``right-heart``:
a darkened copy of the cavity and atrium shifted one LV width towards the septum, painted into unlabelled
sector tissue of the 4CH maps; ``background-from=FOLDER`` / ``heart-from=FOLDER``: the pixels outside /
inside the labelled heart taken from FOLDER's images of the same maps). Prints, per entry: Dice LV endo /
LV epi / LA on the real test images, the median predicted / true area per class, and the share of test
images whose predicted class falls apart in more than one piece (what a segmenter that confuses other
chambers for the labelled ones does).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.outputs import scratch_folder
from EchoSynthLib.evaluation.downstream import DownstreamSettings, _prepared, _train_and_test, paper_dice
from EchoSynthLib.evaluation.image_sets import ImageSet, cache_set, open_set

CAVITY, MYOCARDIUM, ATRIUM, SECTOR, BACKGROUND = (
    s.label
    for s in (
        Structure.LV_CAVITY,
        Structure.LV_MYOCARDIUM,
        Structure.LEFT_ATRIUM,
        Structure.SECTOR,
        Structure.BACKGROUND,
    )
)


def right_heart(image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The image with a darkened, shifted copy of the LV cavity and LA in the sector's unlabelled tissue."""
    heart = (label == CAVITY) | (label == MYOCARDIUM)
    columns = np.nonzero(heart.any(0))[0]
    if len(columns) == 0:
        return image
    shift = round((columns[-1] - columns[0] + 1) * rng.uniform(0.85, 1.05))
    chambers = np.roll(
        ndimage.binary_erosion(label == CAVITY, iterations=2) | (label == ATRIUM), -shift, axis=1
    )
    region = ndimage.binary_erosion(chambers & (label == SECTOR), iterations=1)
    soft = ndimage.gaussian_filter(region.astype(float), 1.5)
    dark = image.min() + (image - image.min()) * rng.uniform(0.25, 0.45)
    return (image * (1 - soft) + dark * soft).astype(np.float32)


def transformed(
    images: ImageSet, name: str, reference: Callable[[str], ImageSet], seed: int = 0
) -> np.ndarray:
    """The set's images (in [-1, 1]) under control ``name``."""
    rng = np.random.default_rng(seed)
    kind, _, value = name.partition("=")
    if kind == "none":
        return images.images
    if kind in ("background-from", "heart-from"):  # one set's heart with the other's surroundings
        other = reference(value)
        if other.names != images.names:
            raise SystemExit(f"{value}: not the same maps in the same order")
        outside = np.isin(images.labels, (BACKGROUND, SECTOR))
        return np.where(outside if kind == "background-from" else ~outside, other.images, images.images)
    if kind == "right-heart":
        return np.stack(
            [
                right_heart(image, label, rng) if "4CH" in case else image
                for image, label, case in zip(images.images, images.labels, images.names, strict=True)
            ]
        )
    unit = (images.images + 1) / 2
    size = float(value)
    if kind == "blur":
        unit = np.stack([ndimage.gaussian_filter(a, size) for a in unit])
    elif kind == "speckle":
        fields = []
        for a in unit:
            real, imaginary = (
                ndimage.gaussian_filter(f, (size, size / 2)) for f in rng.standard_normal((2, *a.shape))
            )
            amplitude = np.hypot(real, imaginary)
            fields.append(np.clip(a * amplitude / amplitude.mean(), 0, 1))
        unit = np.stack(fields)
    else:
        raise SystemExit(f"unknown transform {name!r}")
    return (unit * 2 - 1).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", required=True, help="folder of generated images")
    parser.add_argument("--labels", help="folder of their label maps (default: beside the images)")
    parser.add_argument(
        "--real", default="data/camus224-128", help="prepared cache; its val split is the test"
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--transforms", nargs="+", default=["none"])
    args = parser.parse_args()
    test, cache = cache_set(f"{args.real}:val", "val")
    synthetic = open_set(args.synthetic, cache, args.labels)
    settings = DownstreamSettings(steps=args.steps, seeds=(args.seed,))

    def other(folder: str) -> ImageSet:
        return open_set(folder, cache, args.labels)

    print("| set | control | LV endo / LV epi / LA | area pred/true cavity / myo / atrium | in pieces | s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.transforms:
        start = time.perf_counter()
        images = ImageSet(
            synthetic.description, transformed(synthetic, name, other), synthetic.labels, synthetic.names
        )
        with scratch_folder("echosynth-probe-") as folder:
            predicted = _train_and_test(_prepared(images, "train"), test, settings, args.seed, folder)
        dice = paper_dice(predicted, test.labels)
        areas, pieces = [], []
        for value in (CAVITY, MYOCARDIUM, ATRIUM):
            truth = (test.labels == value).sum(axis=(1, 2))
            found = (predicted == value).sum(axis=(1, 2))
            areas.append(f"{np.median(found[truth > 0] / truth[truth > 0]):.2f}")
            pieces.append(f"{np.mean([ndimage.label(p == value)[1] > 1 for p in predicted]):.0%}")
        scores = " / ".join(f"{np.nanmean(dice[s]):.3f}" for s in ("lv_endo", "lv_epi", "la"))
        print(
            f"| {Path(args.synthetic).name} | {name} | {scores} | {' / '.join(areas)} | {' / '.join(pieces)} "
            f"| {time.perf_counter() - start:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
