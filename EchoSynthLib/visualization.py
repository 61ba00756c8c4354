"""PNG montages of images and their label maps (matplotlib, headless)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume


@dataclass(frozen=True)
class Panel:
    """One 2D view: grey image, canonical labels, pixel aspect (row / column spacing) and a title."""

    title: str
    image: np.ndarray
    labels: np.ndarray
    aspect: float = 1.0


def panels_for(title: str, image: Volume, labels: Volume) -> list[Panel]:
    """The 2D image itself, or three orthogonal slices through a 3D volume (the apical plane through the
    probe, the elevation plane, and a short-axis plane through the widest part of the LV cavity)."""
    sx, sy, sz = image.spacing
    if image.is_2d:
        return [Panel(title, image.array[0], labels.array[0], sy / sx)]
    k_size, _, i_size = image.array.shape
    cavity_per_row = (labels.array == Structure.LV_CAVITY.label).sum(axis=(0, 2))
    row = int(np.argmax(cavity_per_row)) if cavity_per_row.any() else image.array.shape[1] // 2
    k, i = k_size // 2, i_size // 2
    return [
        Panel(f"{title}: azimuth plane", image.array[k], labels.array[k], sy / sx),
        Panel(f"{title}: elevation plane", image.array[:, :, i].T, labels.array[:, :, i].T, sy / sz),
        Panel(f"{title}: short axis", image.array[:, row, :], labels.array[:, row, :], sz / sx),
    ]


def overlay(image: np.ndarray, labels: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """RGB float image: grey levels with the cardiac structures tinted in their colours."""
    grey = np.repeat((image.astype(np.float32) / max(float(image.max()), 1.0))[..., None], 3, axis=-1)
    for structure in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM):
        mask = labels == structure.label
        grey[mask] = (1 - opacity) * grey[mask] + opacity * np.array(structure.color)
    return grey


def save_montage(panels: list[Panel], path: str | os.PathLike, dpi: int = 90) -> Path:
    """A two-row PNG: images on top, label overlays below, one column per panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, len(panels), figsize=(2.6 * len(panels), 5.6), squeeze=False)
    for column, panel in enumerate(panels):
        axes[0, column].imshow(panel.image, cmap="gray", vmin=0, vmax=255, aspect=panel.aspect)
        axes[1, column].imshow(overlay(panel.image, panel.labels), aspect=panel.aspect)
        axes[0, column].set_title(panel.title, fontsize=8)
        for row in (0, 1):
            axes[row, column].axis("off")
    handles = [
        matplotlib.patches.Patch(color=s.color, label=s.display_name)
        for s in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM)
    ]
    figure.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    try:
        return write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(figure)


def grey_of(image) -> np.ndarray:
    """A model image in [-1, 1] (array or tensor; 2D, or 3D: its middle slice; a leading channel of one
    dropped) as uint8 grey levels."""
    values = image.detach().float().cpu().numpy() if hasattr(image, "detach") else np.asarray(image, float)
    while values.ndim > 2 and values.shape[0] == 1:  # channel (and single-slice) axes
        values = values[0]
    values = values if values.ndim == 2 else values[values.shape[0] // 2]
    return np.rint((np.clip(values, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def real_and_label_rows(items, layout) -> list[tuple[str, list[np.ndarray]]]:
    """The first two rows of a label-conditioned model's sample grid: the real images of cache ``items``
    (dicts with 'image' and one-hot 'labels') and their label maps over them (``layout``: the classes)."""
    real = [grey_of(x["image"]) for x in items]
    maps = []
    for x in items:
        channels = x["labels"].detach().cpu().numpy() if hasattr(x["labels"], "detach") else x["labels"]
        labels = layout.to_canonical(layout.channel_values[np.asarray(channels).argmax(0)])
        maps.append(labels if labels.ndim == 2 else labels[labels.shape[0] // 2])
    return [
        ("real", real),
        ("label map (on the real image)", [overlay(r, m) for r, m in zip(real, maps, strict=True)]),
    ]


def save_grid(rows: list[tuple[str, list[np.ndarray]]], path: str | os.PathLike, dpi: int = 80) -> Path:
    """A PNG grid: one titled row per entry; cells are uint8 grey (H, W) or float RGB (H, W, 3) arrays."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(cells) for _, cells in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.6 * columns, 1.7 * len(rows)), squeeze=False)
    for row, (title, cells) in enumerate(rows):
        for column in range(columns):
            axis = axes[row, column]
            axis.axis("off")
            if column < len(cells):
                axis.imshow(cells[column], cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(title, fontsize=7, loc="left")
    figure.tight_layout()
    try:
        return write_atomically(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))
    finally:
        plt.close(figure)
