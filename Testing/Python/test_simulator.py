"""B-mode simulator physics and behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.sector import SectorGeometry
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.simulation import SimulatorSettings, simulate_bmode, simulate_stages

CAVITY, MYO = Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label


def _homogeneous(value: int, size: int = 96) -> Volume:
    """A sector full of one structure (background outside)."""
    grid = Volume.from_2d(np.zeros((size, size), np.uint8), (1.0, 1.0))
    sector = SectorGeometry.centred(grid, depth_mm=size - 1.0, angle_deg=60.0)
    return grid.with_array(np.where(sector.mask(grid), value, 0).astype(np.uint8))


def test_output_has_input_geometry_and_is_uint8(phantom_2d, phantom_3d):
    for phantom in (phantom_2d, phantom_3d):
        image = simulate_bmode(phantom.labels, seed=0)
        assert image.same_geometry(phantom.labels)
        assert image.array.dtype == np.uint8


def test_cavity_darker_than_myocardium_and_black_outside_sector(phantom_2d):
    image = simulate_bmode(phantom_2d.labels, seed=0).array
    labels = phantom_2d.labels.array
    assert image[labels == CAVITY].mean() + 60 < image[labels == MYO].mean()
    outside = ~phantom_2d.sector.mask(phantom_2d.labels)
    assert outside.any() and not image[outside].any()


def test_3d_cavity_darker_than_myocardium(phantom_3d):
    image = simulate_bmode(phantom_3d.labels, seed=0).array
    labels = phantom_3d.labels.array
    assert image[labels == CAVITY].mean() + 40 < image[labels == MYO].mean()
    assert not image[~phantom_3d.sector.mask(phantom_3d.labels)].any()


def test_speckle_envelope_is_rayleigh_in_homogeneous_tissue():
    settings = SimulatorSettings(heterogeneity_mm=0.0, clutter=0.0, noise_db=-200.0, specular_gain=0.0)
    stages = simulate_stages(_homogeneous(MYO), seed=5, settings=settings)
    radius = stages.beams.radius
    window = (radius > 0.3 * radius[-1]) & (radius < 0.7 * radius[-1])
    envelope = stages.envelope[0][:, window]
    envelope = envelope[2:-2].ravel()  # away from the sector edges
    # Rayleigh: mean / std = sqrt(pi / (4 - pi)) = 1.913
    assert envelope.mean() / envelope.std() == pytest.approx(1.913, rel=0.06)
    scale = stats.rayleigh.fit(envelope, floc=0)[1]
    assert stats.kstest(envelope, "rayleigh", args=(0, scale)).statistic < 0.03


def test_brightness_falls_with_depth_without_tgc_and_not_with_it():
    labels = _homogeneous(MYO)
    base = dict(heterogeneity_mm=0.0, clutter=0.0, specular_gain=0.0)
    means = {}
    for tgc in (False, True):
        stages = simulate_stages(labels, seed=1, settings=SimulatorSettings(tgc=tgc, **base))
        thirds = np.array_split(stages.envelope[0], 3, axis=-1)
        means[tgc] = [part.mean() for part in thirds]
    shallow, middle, deep = means[False]
    assert shallow > 1.5 * middle > 1.5 * deep
    assert max(means[True]) < 1.3 * min(means[True])


def test_same_seed_same_image_different_seed_different_speckle(phantom_2d):
    a = simulate_bmode(phantom_2d.labels, seed=7).array
    b = simulate_bmode(phantom_2d.labels, seed=7).array
    c = simulate_bmode(phantom_2d.labels, seed=8).array
    np.testing.assert_array_equal(a, b)
    myo = phantom_2d.labels.array == MYO
    assert np.corrcoef(a[myo].astype(float), c[myo].astype(float))[0, 1] < 0.5


def test_sector_is_recovered_from_the_label_map(phantom_2d):
    fitted = SectorGeometry.fit(phantom_2d.labels.with_array(phantom_2d.labels.array > 0))
    truth = phantom_2d.sector
    np.testing.assert_allclose(fitted.apex_index[:2], truth.apex_index[:2], atol=1.0)
    np.testing.assert_allclose(fitted.azimuth_deg, truth.azimuth_deg, atol=1.5)
    assert fitted.depth_mm == pytest.approx(truth.depth_mm, rel=0.02)


def test_a_drawn_sector_whose_edges_barely_open_is_refused():
    """Edges 4 degrees apart put the apex hundreds of rows above the map: not a probe's sector (the
    paired latent model draws such maps now and then); the simulator must say so, not fire beams metres
    long."""
    rows, cols = np.mgrid[0:64, 0:64]
    half = 12 + rows * np.tan(np.radians(2.0))
    labels = np.where(np.abs(cols - 31.5) <= half, Structure.SECTOR.label, 0).astype(np.uint8)
    labels[20:40, 26:38] = CAVITY
    with pytest.raises(InputError, match=r"open by 4\.\d degrees"):
        simulate_bmode(Volume.from_2d(labels), seed=0)


def test_label_map_without_sector_uses_default_sector():
    labels = np.zeros((64, 64), np.uint8)
    labels[20:40, 25:40] = CAVITY
    image = simulate_bmode(Volume.from_2d(labels), seed=0).array[0]
    assert image[0, 0] == 0 and image[10, 32] > 0


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((1, 16, 16), np.uint8), "no heart structure"),
        (np.full((1, 16, 16), 9, np.uint8), r"\[9\]"),
        (np.full((1, 16, 16), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_label_maps_are_refused(array, message):
    with pytest.raises(InputError, match=message):
        simulate_bmode(Volume(array))


def test_input_is_not_modified(phantom_2d):
    before = phantom_2d.labels.array.copy()
    simulate_bmode(phantom_2d.labels, seed=0)
    np.testing.assert_array_equal(before, phantom_2d.labels.array)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="dynamic_range_db"):
        SimulatorSettings(dynamic_range_db=0.0)


def test_plain_arrays_are_label_maps_too(phantom_2d):
    """A 2D or 3D integer or boolean array works like a Volume on a unit grid."""
    array = phantom_2d.labels.array[0]
    from_array = simulate_bmode(array, seed=3)
    assert from_array.array.shape == (1, *array.shape)
    np.testing.assert_array_equal(from_array.array, simulate_bmode(Volume.from_2d(array), seed=3).array)
    mask = simulate_bmode(array == 1, seed=3)  # a boolean map is the LV cavity
    assert mask.array.shape == from_array.array.shape and mask.array.max() > 0
