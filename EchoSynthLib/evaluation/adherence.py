"""Label adherence: does a synthetic image follow its label map? A segmenter trained on real images
segments the synthetic images; Dice against the conditioning map, per structure (the paper's check).
The same segmenter on the real images of the split gives the ceiling to compare with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.diffusion.samplers import sample
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.dice import dice_per_structure, dice_summary
from EchoSynthLib.models.sdm.pipeline import Synthesizer
from EchoSynthLib.models.segmenter.network import Segmenter


def adherence_report(
    synthesizer: Synthesizer,
    segmenter: Segmenter,
    data: str | Path,
    *,
    split: str = "val",
    sampler: str = "dpm++sde",
    steps: int = 25,
    max_cases: int | None = None,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Dice of the segmenter on synthetic images (for the split's label maps) and on the real images."""
    cache = CacheIndex.open(data)
    layout = cache.manifest.layout
    if layout != synthesizer.config.classes:
        raise InputError(
            f"{data}: classes {layout.as_json()} differ from the model's "
            f"{synthesizer.config.classes.as_json()}"
        )
    if cache.manifest.shape != (synthesizer.config.image_size,) * 2:
        raise InputError(
            f"{data}: images are {list(cache.manifest.shape)}, the model makes "
            f"{synthesizer.config.image_size}"
        )
    dataset = CachedPairs(cache, split, one_hot=True)
    count = len(dataset) if max_cases is None else min(max_cases, len(dataset))
    values = layout.channel_values
    truth, on_real, on_synthetic = [], [], []
    seconds = 0.0
    for start in range(0, count, batch_size):
        items = [dataset[i] for i in range(start, min(count, start + batch_size))]
        seg = torch.stack([x["labels"] for x in items]).to(synthesizer.device)
        began = time.perf_counter()
        images = sample(
            synthesizer.model, seg, synthesizer.diffusion, sampler=sampler, steps=steps, seed=seed + start
        )
        if synthesizer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - began
        truth.append(values[seg.argmax(1).cpu().numpy()])
        on_synthetic.append(segmenter.predict(images))
        on_real.append(segmenter.predict(torch.stack([x["image"] for x in items])))
        if progress is not None:
            progress(len(items))
    truth_all = np.concatenate(truth)
    return {
        "split": split,
        "cases": count,
        "sampler": sampler,
        "steps": steps,
        "seconds_per_image": seconds / max(count, 1),
        "device": str(synthesizer.device),
        "dice_synthetic": dice_summary(dice_per_structure(np.concatenate(on_synthetic), truth_all, layout)),
        "dice_real": dice_summary(dice_per_structure(np.concatenate(on_real), truth_all, layout)),
    }
