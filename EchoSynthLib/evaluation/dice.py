"""Dice per cardiac structure between label maps in one class layout (MONAI's ``compute_dice``)."""

from __future__ import annotations

import numpy as np
import torch

HEART_STRUCTURES = ("lv_cavity", "lv_myocardium", "left_atrium")


def dice_per_structure(
    predicted: np.ndarray, truth: np.ndarray, classes: dict[str, str]
) -> dict[str, np.ndarray]:
    """Per-case Dice (NaN where a structure is absent from the truth) for each class, by structure name.

    ``predicted`` and ``truth`` are (N, H, W) arrays of class values; ``classes`` maps value -> name.
    """
    from monai.metrics import compute_dice

    values = sorted(int(v) for v in classes)

    def one_hot(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([array == v for v in values], axis=1).astype(np.float32))

    scores = compute_dice(one_hot(predicted), one_hot(truth), include_background=True, ignore_empty=True)
    return {classes[str(v)]: scores[:, index].numpy() for index, v in enumerate(values)}
