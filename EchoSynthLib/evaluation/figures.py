"""The report's figures (matplotlib, written as PNG): sample grids with label contours, grey-level
histograms per structure, embeddings of real and synthetic features (PCA and LLE), memorisation pairs,
and downstream Dice with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib.data.labels import HEART
from EchoSynthLib.evaluation.downstream import PAPER_STRUCTURES
from EchoSynthLib.metrics.image_metrics import middle_slices

REAL, SYNTHETIC, BASELINE = "#1f77b4", "#d62728", "#2ca02c"


def _figure(rows: int, cols: int, size: float = 2.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(rows, cols, figsize=(cols * size, rows * size), squeeze=False)
    return plt, figure, axes


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _show(axis, image: np.ndarray, labels: np.ndarray | None, title: str) -> None:
    axis.imshow((image + 1.0) / 2.0, cmap="gray", vmin=0.0, vmax=1.0)
    if labels is not None:
        for structure in HEART:
            mask = labels == structure.label
            if mask.any():
                axis.contour(mask, levels=[0.5], colors=[structure.color], linewidths=0.8)
    axis.set_title(title, fontsize=7)
    axis.axis("off")


def sample_grid(sets: dict[str, Any], path: Path, count: int = 6) -> Path:
    """``count`` images of each set (rows) with their label contours."""
    plt, figure, axes = _figure(len(sets), count)
    for row, (name, images) in enumerate(sets.items()):
        shown = middle_slices(images.images)
        labels = None if images.labels is None else middle_slices(images.labels)
        for col in range(count):
            if col < len(shown):
                _show(
                    axes[row, col],
                    shown[col],
                    None if labels is None else labels[col],
                    f"{name}: {images.names[col]}",
                )
            else:
                axes[row, col].axis("off")
    return _save(plt, figure, path)


def histograms(
    real: dict[str, list[float]],
    synthetic: dict[str, list[float]],
    path: Path,
    baseline: dict[str, list[float]] | None = None,
) -> Path:
    """Grey-level histograms per structure, real against synthetic (and the baseline when given)."""
    names = [s.value for s in HEART if s.value in real or s.value in synthetic]
    plt, figure, axes = _figure(1, max(1, len(names)), size=2.8)
    curves = [(real, REAL, "real"), (synthetic, SYNTHETIC, "synthetic")]
    if baseline is not None:
        curves.append((baseline, BASELINE, "baseline"))
    for axis, name in zip(axes[0], names, strict=False):
        for values, colour, label in curves:
            if name in values:
                centres = (np.arange(len(values[name])) + 0.5) / len(values[name])
                axis.plot(centres, values[name], color=colour, label=label)
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("grey level", fontsize=7)
        axis.legend(fontsize=6)
    return _save(plt, figure, path)


def embeddings(
    real: np.ndarray, synthetic: np.ndarray, path: Path, baseline: np.ndarray | None = None
) -> Path:
    """PCA and locally linear embedding (scikit-learn) of real and synthetic features (and the baseline's
    when given)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import LocallyLinearEmbedding

    groups = [(real, REAL, "real"), (synthetic, SYNTHETIC, "synthetic")]
    if baseline is not None:
        groups.append((baseline, BASELINE, "baseline"))
    joined = np.concatenate([g[0] for g in groups])
    joined = (joined - joined.mean(0)) / (joined.std(0) + 1e-9)
    plt, figure, axes = _figure(1, 2, size=3.2)
    methods = [("PCA", PCA(n_components=2, random_state=0))]
    if len(joined) > 12:
        methods.append(("LLE", LocallyLinearEmbedding(n_components=2, n_neighbors=10, random_state=0)))
    for axis, (name, method) in zip(axes[0], methods, strict=False):
        points = method.fit_transform(joined)
        start = 0
        for values, colour, label in groups:
            axis.scatter(*points[start : start + len(values)].T, s=6, c=colour, label=label, alpha=0.6)
            start += len(values)
        axis.set_title(f"{name} of echo-encoder features", fontsize=8)
        axis.legend(fontsize=6)
    for axis in axes[0][len(methods) :]:
        axis.axis("off")
    return _save(plt, figure, path)


def memorisation_pairs(
    synthetic: np.ndarray,
    train: np.ndarray,
    order: np.ndarray,
    nearest: np.ndarray,
    similarity: np.ndarray,
    path: Path,
    count: int = 6,
) -> Path:
    """The ``count`` synthetic images closest to a training image, each above its nearest training image."""
    shown = order[:count]
    plt, figure, axes = _figure(2, max(1, len(shown)))
    synthetic, train = middle_slices(synthetic), middle_slices(train)
    for col, index in enumerate(shown):
        _show(axes[0, col], synthetic[index], None, f"synthetic {index} (cos {similarity[index]:.3f})")
        _show(axes[1, col], train[nearest[index]], None, f"nearest training {nearest[index]}")
    return _save(plt, figure, path)


def downstream_bars(conditions: dict[str, Any], path: Path) -> Path:
    """Mean Dice with 95 % intervals per structure (papers' classes) and training condition."""
    structures = PAPER_STRUCTURES
    plt, figure, axes = _figure(1, 1, size=4.0)
    axis = axes[0, 0]
    width = 0.8 / max(1, len(conditions))
    for k, (name, result) in enumerate(conditions.items()):
        means = [result["dice"][s]["mean"] for s in structures]
        errors = np.array(
            [
                [m - result["dice"][s]["ci95"][0], result["dice"][s]["ci95"][1] - m]
                for s, m in zip(structures, means, strict=True)
            ]
        ).T
        axis.bar(np.arange(3) + k * width, means, width, yerr=errors, label=name, capsize=2)
    axis.set_xticks(np.arange(3) + width * (len(conditions) - 1) / 2, ["LV endo", "LV epi", "LA"])
    axis.set_ylabel("Dice on real test images")
    axis.set_ylim(0, 1)
    axis.legend(fontsize=6)
    return _save(plt, figure, path)
