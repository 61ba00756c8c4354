"""Preprocessing: sector from the image, resampling geometry, intensities, one case to arrays, splits."""

from __future__ import annotations

import numpy as np
import pytest

from EchoSynthLib.data.cases import Case, CaseRef
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.prepare import PrepareSettings, prepare_case, unit_intensities
from EchoSynthLib.preprocessing.resample import Grid, resample, target_grid
from EchoSynthLib.preprocessing.sector_mask import sector_mask_from_image
from EchoSynthLib.preprocessing.splits import assign_splits
from EchoSynthLib.simulation import simulate_bmode


@pytest.fixture(scope="module")
def echo_case(phantom_2d) -> Case:
    image = simulate_bmode(phantom_2d.labels, seed=1)
    labels = phantom_2d.labels.array.copy()
    labels[labels == Structure.SECTOR.label] = 0  # like a dataset label map: no sector class
    return Case("p1_ED", "p1", image, phantom_2d.labels.with_array(labels), {"phase": "ED"})


def test_sector_from_image_matches_the_simulated_sector(phantom_2d, echo_case):
    truth = phantom_2d.labels.array != 0
    found = sector_mask_from_image(echo_case.image)
    assert found.shape == truth.shape
    dice = 2 * (found & truth).sum() / (found.sum() + truth.sum())
    assert dice > 0.97
    assert found[truth].mean() > 0.97  # dark blood pools inside the sector are not holes


def test_sector_ignores_burned_in_text_and_fills_dark_pools():
    image = np.zeros((1, 80, 80), dtype=np.uint8)
    rows, cols = np.mgrid[:80, :80]
    fan = (rows > 5) & (np.abs(cols - 40) < (rows - 5) * 0.6) & (rows < 75)
    image[0][fan] = 120
    image[0][30:40, 35:45] = 0  # a black cavity inside the fan
    image[0][2:5, 70:78] = 255  # a text label in the corner
    mask = sector_mask_from_image(Volume(image))[0]
    assert mask[fan].all()
    assert not mask[2:5, 70:78].any()


def test_sector_of_a_constant_image_is_an_error():
    with pytest.raises(InputError, match="constant"):
        sector_mask_from_image(Volume(np.zeros((1, 8, 8))))


def test_pad_keeps_the_physical_aspect_ratio_and_centre():
    volume = Volume(np.ones((1, 100, 50), np.float32), spacing=(0.3, 0.15, 1.0), origin=(5.0, 7.0, 2.0))
    grid = target_grid(volume, (64, 64), "pad")
    assert grid.size == (64, 64, 1)
    assert grid.spacing[0] == pytest.approx(grid.spacing[1])  # isotropic in plane
    assert grid.spacing[0] == pytest.approx(max(50 * 0.3, 100 * 0.15) / 64)
    assert grid.origin[2] == pytest.approx(2.0) and grid.spacing[2] == pytest.approx(1.0)
    centre_in = volume.ijk_to_lps() @ np.array([24.5, 49.5, 0.0, 1.0])
    out = Volume(np.zeros((1, 64, 64)), grid.spacing, grid.origin, grid.direction)
    centre_out = out.ijk_to_lps() @ np.array([31.5, 31.5, 0.0, 1.0])
    np.testing.assert_allclose(centre_in, centre_out, atol=1e-9)


def test_stretch_fills_the_grid_and_no_upscale_never_refines():
    volume = Volume(np.ones((1, 100, 50), np.float32), spacing=(0.3, 0.15, 1.0))
    stretch = target_grid(volume, (64, 32), "stretch")
    assert stretch.spacing[:2] == pytest.approx((50 * 0.3 / 32, 100 * 0.15 / 64))
    small = Volume(np.ones((10, 10, 10), np.float32))
    assert target_grid(small, (32, 32, 32), "pad", upscale=False).spacing == pytest.approx((1.0, 1.0, 1.0))
    assert target_grid(small, (32, 32, 32), "pad", upscale=True).spacing[0] == pytest.approx(10 / 32)
    with pytest.raises(InputError, match="target size"):
        target_grid(volume, (32, 32, 32))


def test_label_resampling_is_nearest_neighbour_and_grids_round_trip():
    labels = Volume(np.random.default_rng(0).integers(0, 4, (1, 20, 30)).astype(np.uint8), (0.5, 0.25, 1.0))
    same = resample(labels, Grid.of(labels), labels=True)
    np.testing.assert_array_equal(same.array, labels.array)
    coarse = resample(labels, target_grid(labels, (16, 16)), labels=True)
    assert coarse.array.dtype == np.uint8 and set(np.unique(coarse.array)) <= {0, 1, 2, 3}
    assert Grid.from_dict(Grid.of(labels).as_dict()) == Grid.of(labels)


def test_unit_intensities():
    np.testing.assert_allclose(unit_intensities(np.array([0, 255], np.uint8)), [0.0, 1.0])
    np.testing.assert_allclose(unit_intensities(np.array([-5.0, 0.0, 15.0])), [0.0, 0.25, 1.0])
    with pytest.raises(InputError, match="constant"):
        unit_intensities(np.full(4, 3.0))


def test_prepare_case_adds_the_sector_and_maps_the_layout(echo_case):
    before = echo_case.labels.array.copy()
    prepared = prepare_case(echo_case, PrepareSettings(size=(64, 64)))
    assert prepared.image.shape == prepared.labels.shape == (64, 64)
    assert prepared.image.dtype == np.float32 and prepared.labels.dtype == np.uint8
    assert prepared.image.min() >= -1.0 and prepared.image.max() <= 1.0
    assert set(np.unique(prepared.labels)) == {0, 1, 2, 3, 4}
    assert prepared.image[prepared.labels == 0].mean() < -0.95  # black outside the sector
    np.testing.assert_array_equal(echo_case.labels.array, before)  # input untouched
    efn = prepare_case(echo_case, PrepareSettings(size=(64, 64), layout="echo-from-noise"))
    np.testing.assert_array_equal(efn.labels == 2, prepared.labels == Structure.SECTOR.label)
    np.testing.assert_array_equal(efn.labels == 3, prepared.labels == Structure.LV_MYOCARDIUM.label)
    camus = prepare_case(echo_case, PrepareSettings(size=(64, 64), layout="camus"))
    assert set(np.unique(camus.labels)) == {0, 1, 2, 3}  # no sector class in that layout
    assert prepared.metadata["source_grid"]["size"] == list(echo_case.image.size)


def test_prepare_rejects_empty_maps_and_wrong_dimensions(echo_case):
    empty = Case(
        "e", "e", echo_case.image, echo_case.labels.with_array(np.zeros_like(echo_case.labels.array))
    )
    with pytest.raises(InputError, match="no heart structure"):
        prepare_case(empty, PrepareSettings(size=(32, 32)))
    with pytest.raises(InputError, match="2D case"):
        prepare_case(echo_case, PrepareSettings(size=(16, 16, 16)))
    with pytest.raises(InputError, match="layout"):
        PrepareSettings(layout="nope")


def _refs(patients: int, per_patient: int = 2, split: str | None = None) -> list[CaseRef]:
    return [
        CaseRef(f"p{p:03d}_{c}", f"p{p:03d}", (), lambda: None, split)
        for p in range(patients)
        for c in range(per_patient)
    ]


def test_splits_are_by_patient_deterministic_and_proportional():
    refs = _refs(50)
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    splits = assign_splits(refs, fractions, seed=3)
    assert splits == assign_splits(list(reversed(refs)), fractions, seed=3)  # scan order does not matter
    assert splits != assign_splits(refs, fractions, seed=4)
    by_patient = {}
    for ref in refs:
        by_patient.setdefault(ref.patient_id, set()).add(splits[ref.case_id])
    assert all(len(s) == 1 for s in by_patient.values())
    counts = {s: sum(1 for v in by_patient.values() if s in v) for s in fractions}
    assert counts == {"train": 40, "val": 5, "test": 5}
    tiny = assign_splits(_refs(3), fractions)
    assert set(tiny.values()) == {"train", "val", "test"}  # every split gets a patient when possible


def test_dataset_splits_are_kept_and_conflicts_rejected():
    refs = _refs(4, split="test") + _refs(20)[8:]
    splits = assign_splits(refs, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert all(splits[r.case_id] == "test" for r in refs[:8])
    assert {splits[r.case_id] for r in refs[8:]} == {"train", "val"}  # the dataset defines test itself
    conflict = [CaseRef("a", "p", (), lambda: None, "train"), CaseRef("b", "p", (), lambda: None, "val")]
    with pytest.raises(InputError, match="both"):
        assign_splits(conflict, {"train": 1.0})
    with pytest.raises(InputError, match="fractions"):
        assign_splits(refs, {"train": -1.0})
