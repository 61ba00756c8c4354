"""Label adherence: does a synthetic image follow its label map? A segmenter trained on real images
segments the synthetic images; Dice against the conditioning map, per structure (the paper's check).
The same segmenter on the real images of the split gives the ceiling to compare with. Any label map ->
image generator (``inference.generators``: the simulator or a model of any family) can be checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.inference.generators import Generator, generate_for_maps
from EchoSynthLib.metrics.dice import dice_per_structure, dice_summary
from EchoSynthLib.models.segmenter.network import Segmenter


def _model_images(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 images (H, W) as the segmenter's input: (B, 1, H, W) in [-1, 1]."""
    return torch.from_numpy(np.stack(images).astype(np.float32) / 127.5 - 1.0)[:, None]


def adherence_report(
    generator: Generator,
    segmenter: Segmenter,
    data: str | Path,
    *,
    split: str = "val",
    max_cases: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Dice of the segmenter on the generator's images of the split's label maps (image i of the run uses
    seed + i) and on the real images; ``seconds_per_image``: the generator's time."""
    cache = CacheIndex.open(data)
    layout = cache.manifest.layout
    entries = cache.cases(split)[:max_cases]
    truth, on_real, on_synthetic = [], [], []
    seconds = 0.0
    for start in range(0, len(entries), batch_size):
        batch = entries[start : start + batch_size]
        cases = [cache.load(entry) for entry in batch]
        maps = [
            generator.prepare(cache.label_map(entry, labels))
            for entry, (_, labels) in zip(batch, cases, strict=True)
        ]
        began = time.perf_counter()
        drawn = generate_for_maps(generator, maps, [1] * len(maps), seed + start)
        seconds += time.perf_counter() - began
        truth += [np.asarray(labels).reshape(labels.shape[-2:]) for _, labels in cases]
        synthetic = [images[0].array.reshape(images[0].array.shape[-2:]) for images in drawn]
        on_synthetic.append(segmenter.predict(_model_images(synthetic)))
        real = [np.asarray(image, np.float32).reshape(image.shape[-2:]) for image, _ in cases]
        on_real.append(segmenter.predict(torch.from_numpy(np.stack(real))[:, None]))
        if progress is not None:
            progress(len(cases))
    truth_all = np.stack(truth) if truth else np.zeros((0, 1, 1), np.uint8)
    return {
        "split": split,
        "cases": len(entries),
        "generator": getattr(generator, "description", ""),
        "seconds_per_image": seconds / max(len(entries), 1),
        "dice_synthetic": dice_summary(dice_per_structure(np.concatenate(on_synthetic), truth_all, layout)),
        "dice_real": dice_summary(dice_per_structure(np.concatenate(on_real), truth_all, layout)),
    }
