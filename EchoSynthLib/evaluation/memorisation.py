"""Memorisation check (EchoNet-Synthetic's rule): is a synthetic image closer to some training image than
real held-out images are?

Two similarities, each with its threshold at the 95th percentile of the same similarity from real held-out
images to the training set; a synthetic image above either is flagged:
- features: the cosine of echo-encoder features to the nearest training image, the larger of the image's
  and its mirror's (a flipped copy is still a copy);
- pixels: the largest correlation coefficient of the fine detail (the image minus its Gaussian blur,
  inside the sector shrunk by ``EDGE`` pixels: the speckle, which a copy keeps and a new image does not;
  the sector's outline, shared by every image, is left out) with one of its ``CANDIDATES`` nearest
  training images (features), over shifts of up to ``SHIFT`` pixels and the mirror (a shifted copy is
  still a copy; a small encoder's features move with a 2-pixel shift more than a copy should).
SSIM to the nearest training image is reported next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from EchoSynthLib.errors import InputError

PERCENTILE = 95.0
CANDIDATES = 5
SHIFT = 2
DETAIL_SIGMA = 1.0
EDGE = 2


def _unit(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def nearest(
    queries: np.ndarray, mirrored: np.ndarray, train: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the indices of its ``CANDIDATES`` most similar training samples (most similar
    first) and their cosine similarities (the larger over the query's and its mirror image's features)."""
    train = _unit(train)
    count = min(CANDIDATES, len(train))
    best, where = [], []
    for start in range(0, len(queries), chunk):
        similarity = np.maximum(
            _unit(queries[start : start + chunk]) @ train.T, _unit(mirrored[start : start + chunk]) @ train.T
        )
        order = np.argsort(-similarity, axis=1)[:, :count]
        where.append(order)
        best.append(np.take_along_axis(similarity, order, axis=1))
    return np.concatenate(where), np.concatenate(best)


def _detail(images: np.ndarray) -> np.ndarray:
    """Each image minus its Gaussian blur (sigma ``DETAIL_SIGMA`` pixels), zero outside its sector (the
    non-black pixels) shrunk by ``EDGE`` pixels."""
    from scipy.ndimage import binary_erosion, gaussian_filter

    images = images.astype(np.float64)
    detail = images - gaussian_filter(images, sigma=(0, DETAIL_SIGMA, DETAIL_SIGMA))
    inside = np.stack([binary_erosion(image > -0.98, iterations=EDGE) for image in images])
    return np.where(inside, detail, 0.0)


def _standardised(images: np.ndarray) -> np.ndarray:
    flat = images.reshape(len(images), -1).astype(np.float64)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)


def pixel_similarity(images: np.ndarray, train_images: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The largest correlation coefficient of each image's detail (N, H, W), shifted by up to ``SHIFT``
    pixels each way or mirrored, with its candidate training images' (N, k indices)."""
    out = np.empty(len(images))
    images, train = _detail(images), _standardised(_detail(train_images))
    shifts = [(dy, dx) for dy in range(-SHIFT, SHIFT + 1) for dx in range(-SHIFT, SHIFT + 1)]
    for n, image in enumerate(images):
        variants = [np.roll(view, shift, axis=(0, 1)) for view in (image, image[:, ::-1]) for shift in shifts]
        out[n] = (_standardised(np.stack(variants)) @ train[candidates[n]].T).max()
    return out


@dataclass
class Memorisation:
    """Thresholds, each synthetic image's nearest training image and similarities, and which are flagged."""

    threshold: float
    pixel_threshold: float
    similarity: np.ndarray
    pixel: np.ndarray
    nearest: np.ndarray
    flagged: np.ndarray

    @property
    def share_flagged(self) -> float:
        return float(self.flagged.mean()) if len(self.flagged) else 0.0


def memorisation(
    synthetic: tuple[np.ndarray, np.ndarray, np.ndarray],
    heldout: tuple[np.ndarray, np.ndarray, np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    percentile: float = PERCENTILE,
) -> Memorisation:
    """``synthetic`` and ``heldout``: (features, features of the mirrored images, 2D images); ``train``:
    (features, 2D images)."""
    if len(train[0]) == 0 or len(heldout[0]) == 0:
        raise InputError("the memorisation check needs training images and real held-out images")
    held_index, held_similarity = nearest(heldout[0], heldout[1], train[0])
    threshold = float(np.percentile(held_similarity[:, 0], percentile))
    pixel_threshold = float(np.percentile(pixel_similarity(heldout[2], train[1], held_index), percentile))
    index, similarity = nearest(synthetic[0], synthetic[1], train[0])
    pixel = pixel_similarity(synthetic[2], train[1], index)
    flagged = (similarity[:, 0] > threshold) | (pixel > pixel_threshold)
    return Memorisation(threshold, pixel_threshold, similarity[:, 0], pixel, index[:, 0], flagged)


def nearest_ssim(images: np.ndarray, train_images: np.ndarray, index: np.ndarray) -> np.ndarray:
    """SSIM (MONAI) of each image to its nearest training image (``index``), the better of the image and
    its mirror."""
    from monai.metrics import SSIMMetric

    from EchoSynthLib.metrics.image_metrics import DATA_RANGE, KERNEL, _torch, middle_slices

    images, train_images = middle_slices(images), middle_slices(train_images)
    metric = SSIMMetric(spatial_dims=2, data_range=DATA_RANGE, win_size=KERNEL, reduction="none")
    partners = _torch(train_images[index])
    straight = metric(_torch(images), partners).numpy().ravel()
    mirrored = metric(_torch(images[..., ::-1]), partners).numpy().ravel()
    return np.maximum(straight, mirrored)
