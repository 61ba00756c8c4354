"""The downstream protocol: is a synthetic set useful for training? The same segmenter recipe (MONAI 2D
U-Net, Dice + cross-entropy, Adam; the Echo-from-noise recipe up to the loss) trained with an equal step
budget on real-only, synthetic-only and real + synthetic data, for several seeds, then tested on real
images the generator never saw. Dice per structure in EchoSynth's classes and in the papers' (LV
endocardium = cavity, LV epicardium = cavity + myocardium, LA), with bootstrap 95 % intervals over the
test images (each image's Dice averaged over the seeds first).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib.data.labels import ECHOSYNTH, ClassLayout, Structure
from EchoSynthLib.data.outputs import scratch_folder
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.image_sets import ImageSet
from EchoSynthLib.preprocessing.prepare import PreparedCase, PrepareSettings

PAPER_STRUCTURES = ("lv_endo", "lv_epi", "la")  # the papers' classes: LV endocardium, epicardium, LA

# Echo from noise, Table 1 (CAMUS test split, 50 patients, Dice %): theirs, not ours.
PUBLISHED = {
    "Echo from noise: synthetic only": {"lv_endo": 88.6, "lv_epi": 91.9, "la": 85.2},
    "Echo from noise: real CAMUS": {"lv_endo": 87.8, "lv_epi": 90.9, "la": 82.6},
    "CycleGAN (as reported there)": {"lv_endo": 79.4, "lv_epi": 88.6, "la": 71.3},
}
BOOTSTRAP = 1000


@dataclass(frozen=True)
class DownstreamSettings:
    """Steps per training run, seeds, and the segmenter's batch size."""

    steps: int = 500
    seeds: tuple[int, ...] = (0, 1)
    batch_size: int = 16


def paper_dice(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image Dice (NaN where the truth lacks the structure) for EchoSynth's heart structures and the
    papers' LV endocardium / epicardium / LA, from canonical label maps (N, H, W)."""
    cavity, myocardium, atrium = (
        s.label for s in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM)
    )
    regions = {
        "lv_cavity": [cavity],
        "lv_myocardium": [myocardium],
        "left_atrium": [atrium],
        "lv_endo": [cavity],
        "lv_epi": [cavity, myocardium],
        "la": [atrium],
    }
    out = {}
    for name, values in regions.items():
        p, t = np.isin(predicted, values), np.isin(truth, values)
        overlap = (p & t).sum(axis=(1, 2))
        total = p.sum(axis=(1, 2)) + t.sum(axis=(1, 2))
        out[name] = np.where(t.any(axis=(1, 2)), 2.0 * overlap / np.maximum(total, 1), np.nan)
    return out


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values`` (NaN ignored)."""
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (BOOTSTRAP, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _shared_maps(synthetic: ImageSet, test: ImageSet) -> int:
    """How many synthetic images lie on one of the test images' label maps (the same map exactly)."""
    test_maps = {label.tobytes() for label in test.labels}
    return int(sum(label.tobytes() in test_maps for label in synthetic.labels))


def _prepared(images: ImageSet, split: str, shuffle_labels: bool = False) -> list[PreparedCase]:
    if images.labels is None:
        raise InputError(f"{images.description}: the downstream protocol needs a label map for every image")
    labels = images.labels
    if shuffle_labels:  # the control: images with other images' label maps
        labels = labels[np.random.default_rng(0).permutation(len(labels))]
    return [
        PreparedCase(f"{split}-{i}", f"{split}-{i}", image, ECHOSYNTH.from_canonical(label), {})
        for i, (image, label) in enumerate(zip(images.images, labels, strict=True))
    ]


def _train_and_test(
    train: list[PreparedCase], test: ImageSet, settings: DownstreamSettings, seed: int, folder: Path
) -> np.ndarray:
    """Canonical predictions on the test images of a segmenter trained on ``train``."""
    import torch

    from EchoSynthLib.cache.store import write_prepared_cache
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.segmenter.network import SegmenterConfig
    from EchoSynthLib.models.segmenter.trainer import SegmenterTrainer

    size = tuple(test.images.shape[1:])
    prepare = PrepareSettings(size=size, layout="echosynth")
    cache = write_prepared_cache(folder / "cache", {"train": train}, prepare, "downstream")
    config = SegmenterConfig(batch_size=settings.batch_size, seed=seed)
    run = RunSettings(
        max_steps=settings.steps,
        workers=0,
        log_every=settings.steps,
        val_every=settings.steps,
        checkpoint_every=settings.steps,
    )
    trainer = SegmenterTrainer(cache.path, folder / "run", config, "cpu", run)
    trainer.fit()
    model = trainer.state.model.eval()
    values = ClassLayout.of(ECHOSYNTH).channel_values
    with torch.no_grad():
        logits = [
            model(torch.from_numpy(test.images[i : i + 32])[:, None]) for i in range(0, len(test.images), 32)
        ]
    return values[torch.cat(logits).argmax(1).numpy()]


def downstream(
    real_train: ImageSet,
    synthetic: ImageSet,
    test: ImageSet,
    settings: DownstreamSettings = DownstreamSettings(),
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Dice on ``test`` of segmenters trained on real-only, synthetic-only and both, and on real images with
    shuffled label maps (the floor, a control): per structure, mean with its bootstrap interval."""
    if test.labels is None or test.spatial_dims != 2:
        raise InputError("the downstream protocol tests on labelled 2D real images")
    leaked = _shared_maps(synthetic, test)
    conditions = {
        "real only": _prepared(real_train, "train"),
        "synthetic only": _prepared(synthetic, "train"),
    }
    conditions["real + synthetic"] = conditions["real only"] + [
        PreparedCase(f"s{c.case_id}", f"s{c.patient_id}", c.image, c.labels, {})
        for c in conditions["synthetic only"]
    ]
    conditions["real, labels shuffled (control)"] = _prepared(real_train, "train", shuffle_labels=True)
    results: dict[str, Any] = {}
    with scratch_folder("echosynth-downstream-") as scratch:
        for name, cases in conditions.items():
            per_seed = []
            for seed in settings.seeds:
                if progress is not None:
                    progress(f"{name}, seed {seed}")
                folder = Path(scratch) / f"{len(results)}-{seed}"
                per_seed.append(paper_dice(_train_and_test(cases, test, settings, seed, folder), test.labels))
            table = {}
            for structure in per_seed[0]:
                with warnings.catch_warnings():  # NaN where an image lacks the structure, in every seed
                    warnings.simplefilter("ignore", RuntimeWarning)
                    per_image = np.nanmean(np.stack([d[structure] for d in per_seed]), axis=0)
                low, high = bootstrap_interval(per_image)
                table[structure] = {"mean": float(np.nanmean(per_image)), "ci95": [low, high]}
            results[name] = {"training_images": len(cases), "dice": table}
    return {
        "synthetic_images_on_test_label_maps": leaked,
        "warning": (
            f"{leaked} synthetic images were made from the test split's own label maps: their scores are not "
            "a fair test (make the synthetic set from the training maps)"
            if leaked
            else ""
        ),
        "steps": settings.steps,
        "seeds": list(settings.seeds),
        "test": {"set": test.description, "images": len(test.images)},
        "conditions": results,
        "published_dice_percent": PUBLISHED,
    }
