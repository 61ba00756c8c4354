"""Metrics on the images themselves: diversity (MS-SSIM between random pairs), grey levels and speckle per
structure, the radial power spectrum, similarity to paired sources (SSIM / PSNR / MSE), and label
adherence (a segmenter on each image against its label map).

Images are float arrays in [-1, 1] (data range 2); labels are canonical values. 3D sets are measured on
their middle slice across the first axis where a 2D measure is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from EchoSynthLib.data.labels import HEART
from EchoSynthLib.errors import InputError

DATA_RANGE = 2.0
STANDARD_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
KERNEL = 7


def middle_slices(images: np.ndarray) -> np.ndarray:
    """2D images as they are; the middle slice (first axis) of each 3D volume."""
    return images if images.ndim == 3 else images[:, images.shape[1] // 2]


def ms_ssim_scales(size: int) -> tuple[float, ...]:
    """MS-SSIM weights for images of side ``size``: as many of the standard five scales as the image
    allows with a 7-pixel window (MONAI requires size // (scales - 1)^2 > window - 1), renormalised."""
    for scales in range(5, 1, -1):
        if size // (scales - 1) ** 2 > KERNEL - 1:
            weights = np.array(STANDARD_MS_SSIM_WEIGHTS[:scales])
            return tuple(float(w) for w in weights / weights.sum())
    raise InputError(f"images of {size} pixels are too small for MS-SSIM")


def _torch(images: np.ndarray):
    import torch

    return torch.as_tensor(np.ascontiguousarray(images), dtype=torch.float32)[:, None]


def diversity(images: np.ndarray, pairs: int = 200, seed: int = 0) -> dict[str, Any]:
    """Mean MS-SSIM (MONAI) between ``pairs`` random pairs of different images: lower is more diverse."""
    from monai.metrics import MultiScaleSSIMMetric

    images = middle_slices(images)
    if len(images) < 2:
        raise InputError("diversity needs at least 2 images")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(images), pairs)
    second = (first + rng.integers(1, len(images), pairs)) % len(images)
    weights = ms_ssim_scales(min(images.shape[1:]))
    metric = MultiScaleSSIMMetric(
        spatial_dims=2, data_range=DATA_RANGE, kernel_size=KERNEL, weights=weights, reduction="none"
    )
    values = metric(_torch(images[first]), _torch(images[second])).numpy().ravel()
    return {"ms_ssim": float(values.mean()), "pairs": pairs, "scales": len(weights)}


def paired_similarity(images: np.ndarray, sources: np.ndarray) -> dict[str, float]:
    """SSIM, PSNR and MSE of each image to its source (MONAI), averaged: for translated images."""
    from monai.metrics import PSNRMetric, SSIMMetric

    images, sources = middle_slices(images), middle_slices(sources)
    if images.shape != sources.shape:
        raise InputError(f"paired sets differ in shape: {images.shape} and {sources.shape}")
    a, b = _torch(images), _torch(sources)
    ssim = SSIMMetric(spatial_dims=2, data_range=DATA_RANGE, win_size=KERNEL, reduction="none")(a, b)
    psnr = PSNRMetric(max_val=DATA_RANGE, reduction="none")(a, b)
    return {
        "ssim": float(ssim.mean()),
        "psnr_db": float(psnr.mean()),
        "mse": float(((images - sources) ** 2).mean()),
    }


def _autocorrelation_width(patch: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Full widths at half maximum (pixels) of the normalised autocorrelation of the zero-mean intensities
    inside ``mask``, along rows (axial) and columns (lateral)."""
    values = np.where(mask, patch - patch[mask].mean(), 0.0)
    spectrum = np.fft.fft2(values, s=(2 * values.shape[0], 2 * values.shape[1]))
    correlation = np.real(np.fft.ifft2(np.abs(spectrum) ** 2))
    if correlation[0, 0] <= 0:
        return float("nan"), float("nan")
    correlation /= correlation[0, 0]

    def width(profile: np.ndarray) -> float:
        below = np.nonzero(profile < 0.5)[0]
        if len(below) == 0:
            return float("nan")
        k = below[0]  # linear interpolation of the half-maximum crossing, both sides
        crossing = k - 1 + (profile[k - 1] - 0.5) / (profile[k - 1] - profile[k])
        return float(2 * crossing)

    return width(correlation[:, 0]), width(correlation[0, :])


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values, NaN when there is none (a structure too small for a speckle width)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def structure_statistics(images: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per heart structure: grey-level mean, standard deviation, 5th/50th/95th percentiles and SNR (mean /
    standard deviation of the displayed intensities, in [0, 1]), and speckle size (autocorrelation FWHM,
    pixels, axial and lateral), averaged over images where the structure has at least 50 pixels."""
    images, labels = middle_slices(images), middle_slices(labels)
    out: dict[str, dict[str, float]] = {}
    for structure in HEART:
        rows = []
        for image, label in zip(images, labels, strict=True):
            mask = label == structure.label
            if mask.sum() < 50:
                continue
            grey = (image[mask] + 1.0) / 2.0
            axial, lateral = _autocorrelation_width(image, mask)
            p5, p50, p95 = np.percentile(grey, [5, 50, 95])
            rows.append(
                [grey.mean(), grey.std(), p5, p50, p95, grey.mean() / max(grey.std(), 1e-6), axial, lateral]
            )
        if rows:
            keys = ("mean", "std", "p5", "median", "p95", "snr", "speckle_axial_px", "speckle_lateral_px")
            table = np.array(rows)
            out[structure.value] = {k: _mean(table[:, i]) for i, k in enumerate(keys)}
            out[structure.value]["images"] = len(rows)
    return out


def structure_histograms(images: np.ndarray, labels: np.ndarray, bins: int = 32) -> dict[str, list[float]]:
    """Normalised grey-level histograms (``bins`` bins over [0, 1]) per heart structure, for the figures."""
    images, labels = middle_slices(images), middle_slices(labels)
    out = {}
    for structure in HEART:
        grey = (images[labels == structure.label] + 1.0) / 2.0
        if grey.size:
            counts, _ = np.histogram(grey, bins=bins, range=(0.0, 1.0))
            out[structure.value] = (counts / counts.sum()).tolist()
    return out


def radial_spectrum(images: np.ndarray, bins: int = 32) -> np.ndarray:
    """Mean log radial power spectrum of the images (``bins`` radial frequency bins up to Nyquist, fewer
    for images under 2 * ``bins`` pixels, so that every bin holds frequencies)."""
    images = middle_slices(images)
    height, width = images.shape[1:]
    bins = max(1, min(bins, min(height, width) // 2))
    fy, fx = np.meshgrid(np.fft.fftfreq(height), np.fft.fftfreq(width), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2) / 0.5
    index = np.minimum((radius * bins).astype(int), bins)  # bin ``bins`` collects the corners beyond Nyquist
    power = np.abs(np.fft.fft2(images - images.mean(axis=(1, 2), keepdims=True))) ** 2
    totals = np.array([power[:, index == b].mean() for b in range(bins)])
    return np.log10(totals + 1e-12)


def spectrum_distance(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Root mean square difference of the two sets' log radial power spectra (decades)."""
    return float(np.sqrt(np.mean((radial_spectrum(real) - radial_spectrum(synthetic)) ** 2)))


def adherence(predicted: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Dice per heart structure of a segmenter's canonical predictions against the conditioning maps."""
    from EchoSynthLib.data.labels import ECHOSYNTH, ClassLayout
    from EchoSynthLib.metrics.dice import dice_per_structure, dice_summary

    return dice_summary(dice_per_structure(predicted, labels, ClassLayout.of(ECHOSYNTH)))
