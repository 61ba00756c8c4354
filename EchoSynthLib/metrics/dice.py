"""Dice per cardiac structure between label maps in one class layout (MONAI's ``compute_dice``)."""

from __future__ import annotations

import numpy as np
import torch

from EchoSynthLib.data.labels import ClassLayout

HEART_STRUCTURES = ("lv_cavity", "lv_myocardium", "left_atrium")


def dice_summary(scores: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and case count of per-case Dice for each heart structure that occurs."""
    return {
        name: {
            "mean": float(np.nanmean(values)),
            "std": float(np.nanstd(values)),
            "cases": int(np.sum(~np.isnan(values))),
        }
        for name, values in scores.items()
        if name in HEART_STRUCTURES and np.any(~np.isnan(values))
    }


def dice_per_structure(
    predicted: np.ndarray, truth: np.ndarray, layout: ClassLayout
) -> dict[str, np.ndarray]:
    """Per-case Dice (NaN where a structure is absent from the truth) for each class, by structure name.

    ``predicted`` and ``truth`` are (N, H, W) arrays of class values in ``layout``.
    """
    from monai.metrics import compute_dice

    values = layout.channel_values

    def one_hot(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([array == v for v in values], axis=1).astype(np.float32))

    scores = compute_dice(one_hot(predicted), one_hot(truth), include_background=True, ignore_empty=True)
    return {s.value: scores[:, index].numpy() for index, s in enumerate(layout.structures)}
