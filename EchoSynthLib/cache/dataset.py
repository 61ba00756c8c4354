"""PyTorch access to a training cache: a Dataset of (image, labels) samples and a seeded DataLoader.

Samples are dicts of channel-first tensors: ``image`` float32 (1, [D,] H, W) in [-1, 1], ``labels``
int64 (1, ...) or, with ``one_hot=True``, float32 (C, ...) with one channel per manifest class, plus
``case_id``. An optional MONAI dictionary transform (e.g. the paired augmentation) runs before the
one-hot step. The loader is MONAI's DataLoader, which reseeds MONAI's random transforms in every worker
from a seeded generator, so a run is reproducible for a given seed and number of workers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader

from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.errors import InputError


class CachedPairs(torch.utils.data.Dataset):
    """The cases of one split of a cache, as tensors (see the module docstring)."""

    def __init__(
        self,
        cache: str | Path | CacheIndex,
        split: str = "train",
        *,
        one_hot: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self.cache = cache if isinstance(cache, CacheIndex) else CacheIndex.open(cache)
        self.split = split
        self.entries = self.cache.cases(split)
        if not self.entries:
            raise InputError(f"{self.cache.path}: the {split} split has no case")
        self.cache.check(split)  # before any work: a damaged file fails now, not after hours of training
        self.layout = self.cache.manifest.layout
        self.one_hot = one_hot
        self.transform = transform

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        image, labels = self.cache.load(entry)
        sample: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(image)).unsqueeze(0),
            "labels": torch.from_numpy(labels.astype(np.int64)).unsqueeze(0),
        }
        if self.transform is not None:
            sample = dict(self.transform(sample))
            sample["image"] = torch.as_tensor(sample["image"], dtype=torch.float32)
            sample["labels"] = torch.as_tensor(sample["labels"]).long()
        if self.one_hot:
            values = torch.from_numpy(self.layout.channel_values.astype(np.int64))
            sample["labels"] = (
                sample["labels"] == values.view(-1, *[1] * (sample["labels"].ndim - 1))
            ).float()
        sample["case_id"] = entry["case_id"]
        return sample


def make_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    workers: int = 0,
    seed: int = 0,
    pin_memory: bool | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A seeded MONAI DataLoader; pinned memory by default when CUDA is available."""
    if batch_size < 1 or workers < 0:
        raise InputError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {workers}")
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=generator,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=drop_last,
        persistent_workers=workers > 0,
    )
