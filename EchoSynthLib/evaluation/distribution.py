"""Distances between two sets of feature vectors: Fréchet distance, KID, precision / recall, density /
coverage. Inputs are (N, F) arrays from one feature space (``evaluation.feature_spaces``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from EchoSynthLib.errors import InputError


def _check(real: np.ndarray, synthetic: np.ndarray, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real, synthetic = np.asarray(real, dtype=np.float64), np.asarray(synthetic, dtype=np.float64)
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise InputError(
            f"feature sets must be (N, F) with the same F, got {real.shape} and {synthetic.shape}"
        )
    if min(len(real), len(synthetic)) < minimum:
        raise InputError(f"need at least {minimum} images in each set, got {len(real)} and {len(synthetic)}")
    if not (np.isfinite(real).all() and np.isfinite(synthetic).all()):
        raise InputError("feature vectors contain NaN or infinite values")
    return real, synthetic


def frechet_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the two sets (MONAI's ``FIDMetric``; FID proper in the
    Inception space).

    With fewer images than features the covariances are singular, and MONAI's square root of their
    non-symmetric product can come back with an imaginary part it refuses. Then the same trace is taken
    from the symmetric form sqrt(S1) S2 sqrt(S1), whose eigenvalues are real and non-negative (written here:
    no maintained library offers it)."""
    import warnings

    import torch
    from monai.metrics import FIDMetric

    real, synthetic = _check(real, synthetic)
    try:
        with (
            warnings.catch_warnings()
        ):  # MONAI 1.6 passes scipy's deprecated sqrtm(disp=False); singular fits
            warnings.simplefilter("ignore")
            value = float(FIDMetric()(torch.from_numpy(synthetic), torch.from_numpy(real)))
        if np.isfinite(value):
            return max(0.0, value)
    except ValueError:
        pass
    return _symmetric_frechet(real, synthetic)


def _symmetric_frechet(real: np.ndarray, synthetic: np.ndarray) -> float:
    mean_difference = real.mean(0) - synthetic.mean(0)
    first, second = np.cov(real, rowvar=False), np.cov(synthetic, rowvar=False)
    values, vectors = np.linalg.eigh(first)
    root = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = np.linalg.eigvalsh(root @ second @ root)
    trace_root = np.sqrt(np.clip(product, 0, None)).sum()
    return max(
        0.0, float(mean_difference @ mean_difference + np.trace(first) + np.trace(second) - 2 * trace_root)
    )


@dataclass(frozen=True)
class KID:
    """Kernel inception distance: the mean of unbiased MMD² estimates over random subsets, and its
    standard error over those subsets."""

    mean: float
    standard_error: float
    subsets: int
    subset_size: int


def kernel_distance(
    real: np.ndarray, synthetic: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> KID:
    """KID (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
    k(x, y) = (x.y / F + 1)^3 on ``subsets`` random subsets of ``subset_size`` (at most half the smaller set).

    Written here because MONAI's ``MMDMetric`` uses the linear kernel on sets of equal size, which is not
    KID, and no maintained library computes KID on feature arrays without torchvision's Inception.
    """
    real, synthetic = _check(real, synthetic)
    # At most half the smaller set: subsets as large as a set would all be that set, and their spread,
    # the standard error, would say 0 whatever the sampling noise.
    size = max(2, min(subset_size, min(len(real), len(synthetic)) // 2))
    dims = real.shape[1]
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]
        y = synthetic[rng.choice(len(synthetic), size, replace=False)]
        kxx = (x @ x.T / dims + 1.0) ** 3
        kyy = (y @ y.T / dims + 1.0) ** 3
        kxy = (x @ y.T / dims + 1.0) ** 3
        off = size * (size - 1)
        estimates.append(
            (kxx.sum() - np.trace(kxx)) / off + (kyy.sum() - np.trace(kyy)) / off - 2.0 * kxy.mean()
        )
    values = np.asarray(estimates)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return KID(float(values.mean()), error, subsets, size)


@dataclass(frozen=True)
class Manifold:
    """Improved precision / recall (Kynkäänniemi et al. 2019) and density / coverage (Naeem et al. 2020)
    with k nearest neighbours."""

    precision: float
    recall: float
    density: float
    coverage: float
    k: int


def manifold_metrics(real: np.ndarray, synthetic: np.ndarray, k: int = 3) -> Manifold:
    """Precision: share of synthetic samples inside some real sample's k-NN ball; recall: share of real
    samples inside some synthetic sample's ball; density: mean number of real balls holding a synthetic
    sample, over k; coverage: share of real balls holding at least one synthetic sample. Neighbours from
    scikit-learn; the four formulas are a few lines and no maintained package offers them on arrays."""
    from sklearn.neighbors import NearestNeighbors

    real, synthetic = _check(real, synthetic, minimum=k + 1)

    def radii(points: np.ndarray) -> np.ndarray:
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
        return distances[:, k]  # the first neighbour is the point itself

    real_radii, synthetic_radii = radii(real), radii(synthetic)
    between = np.linalg.norm(real[:, None, :] - synthetic[None, :, :], axis=-1)  # (real, synthetic)
    inside_real = between <= real_radii[:, None]
    precision = float(inside_real.any(axis=0).mean())
    recall = float((between <= synthetic_radii[None, :]).any(axis=1).mean())
    density = float(inside_real.sum(axis=0).mean() / k)
    coverage = float((between.min(axis=1) <= real_radii).mean())
    return Manifold(precision, recall, density, coverage, k)
