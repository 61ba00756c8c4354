"""The distribution metrics on feature sets: each can fail, and moves the way it must."""

from __future__ import annotations

import numpy as np
import pytest

from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.distribution import frechet_distance, kernel_distance, manifold_metrics


def _modes(count: int, per_mode: int, seed: int, modes: int = 8, dims: int = 8) -> np.ndarray:
    """``count * per_mode`` points drawn i.i.d. from the first ``count`` of ``modes`` Gaussian clusters, at
    the scale of pooled ReLU features (about 0..2)."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(1.0, 1.0, (modes, dims))
    chosen = rng.integers(0, count, count * per_mode)
    return centres[chosen] + rng.normal(0, 0.15, (count * per_mode, dims))


def test_frechet_and_kid_are_zero_for_one_set_and_grow_with_shift_and_noise():
    real = _modes(8, 40, seed=0)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    itself = kernel_distance(real, real, subsets=20, subset_size=100).mean
    same_law = _modes(8, 40, seed=1)
    distances, kids = [], []
    for amount in (0.0, 0.1, 0.3, 1.0):
        noisy = same_law + np.random.default_rng(2).normal(0, amount, same_law.shape) + amount
        distances.append(frechet_distance(real, noisy))
        kids.append(kernel_distance(real, noisy, subsets=20, subset_size=100).mean)
    assert distances == sorted(distances) and distances[-1] > 10 * distances[0]
    assert kids == sorted(kids) and kids[-1] > 10 * abs(kids[0]) and kids[-1] > 20 * abs(itself)


def test_kid_is_unbiased_around_zero_and_reports_its_standard_error():
    """Over independent samples of one law the estimates centre on 0 (the biased MMD would stay > 0)."""
    estimates = [
        kernel_distance(_modes(8, 30, seed=10 + 2 * i), _modes(8, 30, seed=11 + 2 * i), subsets=10).mean
        for i in range(8)
    ]
    assert min(estimates) < 0 < max(estimates)
    other_law = kernel_distance(_modes(8, 30, seed=3), _modes(8, 30, seed=4) + 0.3, subsets=10)
    assert other_law.mean > 5 * max(abs(e) for e in estimates) and other_law.standard_error > 0
    assert other_law.subset_size == 120  # half the smaller set: its spread over subsets is then not 0


def test_precision_stays_and_recall_drops_when_half_the_modes_are_missing():
    real = _modes(8, 50, seed=5)
    full = manifold_metrics(real, _modes(8, 50, seed=6))
    half = manifold_metrics(real, _modes(4, 100, seed=7))
    assert full.precision > 0.8 and full.recall > 0.8 and full.coverage > 0.8
    assert half.precision > 0.8 and half.recall < 0.6 and half.coverage < 0.6
    far = manifold_metrics(real, _modes(8, 50, seed=8) + 30.0)
    assert far.precision == 0.0 and far.density == 0.0


@pytest.mark.parametrize(
    ("real", "synthetic", "words"),
    [
        (np.zeros((5, 3)), np.zeros((5, 4)), "same F"),
        (np.zeros((1, 3)), np.zeros((5, 3)), "at least 2"),
        (np.full((5, 3), np.nan), np.zeros((5, 3)), "NaN"),
    ],
)
def test_bad_feature_sets_are_named(real, synthetic, words):
    with pytest.raises(InputError, match=words):
        frechet_distance(real, synthetic)


def test_ms_ssim_diversity_is_higher_for_near_copies_than_for_a_diverse_set(phantom_2d):
    from EchoSynthLib.metrics.image_metrics import diversity
    from EchoSynthLib.simulation import simulate_bmode

    rng = np.random.default_rng(0)
    image = simulate_bmode(phantom_2d.labels, seed=0).array[0].astype(np.float32) / 127.5 - 1.0
    copies = np.stack([np.clip(image + rng.normal(0, 0.02, image.shape), -1, 1) for _ in range(6)])
    diverse = rng.uniform(-1, 1, (6, *image.shape)).astype(np.float32)
    assert diversity(copies)["ms_ssim"] > 0.9 > 0.2 > diversity(diverse)["ms_ssim"]


def test_speckle_size_grows_with_blur_and_grey_levels_follow_the_image(phantom_2d):
    from scipy.ndimage import gaussian_filter

    from EchoSynthLib.metrics.image_metrics import spectrum_distance, structure_statistics

    rng = np.random.default_rng(1)
    labels = phantom_2d.labels.array[0]
    noise = rng.normal(0, 0.3, labels.shape)
    sizes = []
    for sigma in (0.5, 1.5, 3.0):
        image = np.clip(gaussian_filter(noise, sigma) * 3, -1, 1)[None].astype(np.float32)
        sizes.append(structure_statistics(image, labels[None])["lv_cavity"]["speckle_axial_px"])
    assert sizes == sorted(sizes) and sizes[-1] > 3 * sizes[0]
    bright = structure_statistics(np.full((1, *labels.shape), 0.5, np.float32), labels[None])
    assert bright["lv_myocardium"]["mean"] == pytest.approx(0.75)
    smooth = gaussian_filter(noise, 2)[None]
    assert spectrum_distance(noise[None], noise[None]) == 0 < spectrum_distance(noise[None], smooth)


def test_frechet_distance_survives_fewer_images_than_features_and_agrees_with_monai():
    from EchoSynthLib.evaluation.distribution import _symmetric_frechet

    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (200, 8)), rng.normal(0.3, 1.2, (150, 8))
    assert _symmetric_frechet(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    few, other = rng.normal(0, 1, (10, 64)), rng.normal(0.5, 1, (12, 64))
    assert np.isfinite(frechet_distance(few, other)) and frechet_distance(few, other) > frechet_distance(
        few, few
    )
