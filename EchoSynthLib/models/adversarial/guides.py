"""The simulator guide: the training-free simulator's image of a label map, so that the adversarial model
learns simulator -> real scanner on pairs made by construction from any labelled dataset.

For training, every case's guide is simulated once (seed = the case's position in its split) and kept in
the run folder (``guides_<split>.safetensors``, written atomically), so resuming does not simulate again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.preprocessing.resample import Grid


def simulated(labels: Volume, seed: int) -> torch.Tensor:
    """The simulator's image of a canonical map, (1, H, W) in [-1, 1]."""
    from EchoSynthLib.simulation import simulate_bmode

    image = simulate_bmode(labels, seed).array.astype(np.float32)
    return torch.from_numpy(image.reshape(1, *image.shape[-2:]) / 127.5 - 1.0)


def on_grid(one_hot: np.ndarray, layout: ClassLayout, grid: Grid) -> Volume:
    """The canonical label map of a one-hot map (C, H, W) laid out as ``grid``."""
    values = layout.channel_values[np.asarray(one_hot).argmax(0)]
    canonical = layout.to_canonical(values).astype(np.uint8)[np.newaxis]
    return Volume(canonical, grid.spacing, grid.origin, grid.direction)


def split_guides(cache, split: str, folder: Path) -> dict[str, torch.Tensor]:
    """case_id -> simulator guide for every case of a cache split, read from (or first written to)
    ``folder / guides_<split>.safetensors``."""
    from safetensors.torch import load_file, save_file

    path = folder / f"guides_{split}.safetensors"
    entries = cache.cases(split)
    if path.is_file():
        stored = load_file(str(path))
        if set(stored) == {e["case_id"] for e in entries}:
            return stored
    guides = {}
    for index, entry in enumerate(entries):
        _, labels = cache.load(entry)
        guides[entry["case_id"]] = simulated(cache.label_map(entry, labels), index).contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: save_file(guides, str(tmp)))
    return guides
