"""Label-map augmentation (Echo-from-noise settings), paired training transforms and ``echosynth augment``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from EchoSynthLib.augmentation import (
    LabelMapAugmentation,
    augment_label_map,
    augment_many,
    labelmaps,
    output_path,
    paired_augmentation,
)
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import read_label_map, write_image, write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError, UnknownLabelError

SECTOR = Structure.SECTOR.label
HEART = {s.label for s in labelmaps.HEART}
CANONICAL = {s.label for s in Structure}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _check_augmented(labels: Volume, out: Volume) -> None:
    before, after = labels.array, out.array
    assert out.same_geometry(labels) and out.array.dtype == np.uint8
    values = set(np.unique(after).tolist())
    assert values <= CANONICAL and values <= set(np.unique(before).tolist()) | {SECTOR}
    assert not after[before == 0].any(), "labels outside the original sector"
    assert HEART & set(np.unique(before).tolist()) <= values, "a heart structure vanished"
    cavity = Structure.LV_CAVITY.label
    assert 0.4 < _dice(before == cavity, after == cavity) < 0.99


@pytest.fixture(scope="module")
def augmented_2d(phantom_2d):
    labels = phantom_2d.labels
    copy = labels.array.copy()
    out = augment_label_map(labels, seed=0)
    np.testing.assert_array_equal(labels.array, copy)  # the input is untouched
    return out


def test_2d_augmentation_stays_in_sector_and_keeps_structures(phantom_2d, augmented_2d):
    _check_augmented(phantom_2d.labels, augmented_2d)
    sector = phantom_2d.labels.array != 0
    assert np.all(augmented_2d.array[sector] != 0), "inside the sector, background becomes SECTOR"


def test_seeds_reproduce_and_differ(phantom_2d, augmented_2d):
    np.testing.assert_array_equal(augment_label_map(phantom_2d.labels, seed=0).array, augmented_2d.array)
    variants = augment_many(phantom_2d.labels, 3, seed=4)
    assert len(variants) == 3
    arrays = [augmented_2d.array] + [v.array for v in variants]
    assert all(not np.array_equal(a, b) for i, a in enumerate(arrays) for b in arrays[i + 1 :])
    np.testing.assert_array_equal(augment_many(phantom_2d.labels, 1, seed=4)[0].array, variants[0].array)


def test_3d_augmentation(phantom_3d):
    labels = phantom_3d.labels
    copy = labels.array.copy()
    out = augment_label_map(labels, seed=1)
    np.testing.assert_array_equal(labels.array, copy)
    _check_augmented(labels, out)


def test_3d_field_std_formula():
    """Gaussian-smoothed U(-1, 1) noise has std (1/sqrt(3)) * (8 pi^1.5 sigma^3)^-1/2 (used for 3D)."""
    from monai.networks.layers import GaussianFilter

    sigma = 2.5
    noise = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (1, 1, 40, 40, 40)), dtype=torch.float32)
    smooth = GaussianFilter(3, sigma, 3.0)(noise)[0, 0, 8:-8, 8:-8, 8:-8]
    expected = (8 * np.pi**1.5 * sigma**3) ** -0.5 / np.sqrt(3)
    assert smooth.std().item() == pytest.approx(expected, rel=0.1)


def test_map_without_sector_class_gets_none(phantom_2d):
    array = phantom_2d.labels.array.copy()
    array[array == SECTOR] = 0
    out = augment_label_map(phantom_2d.labels.with_array(array), seed=2)
    values = set(np.unique(out.array).tolist())
    assert SECTOR not in values and HEART & set(np.unique(array).tolist()) <= values


def _tiny(values: np.ndarray) -> Volume:
    return Volume.from_2d(values)


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.zeros((1, 0, 0), np.uint8), InputError, "empty"),
        (np.full((1, 8, 8), np.nan), InputError, "NaN"),
        (np.full((1, 8, 8), 7, np.uint8), UnknownLabelError, "7"),
        (np.zeros((1, 8, 8), np.uint8), InputError, "heart"),
        (np.full((1, 8, 8), SECTOR, np.uint8), InputError, "heart"),
    ],
)
def test_bad_maps_raise(array, error, message):
    with pytest.raises(error, match=message):
        augment_label_map(Volume(array), seed=0)


def test_bad_seed_count_and_settings(phantom_2d):
    with pytest.raises(InputError, match="seed"):
        augment_label_map(phantom_2d.labels, seed=-1)
    with pytest.raises(InputError, match="at least 1"):
        augment_many(phantom_2d.labels, 0, seed=0)
    with pytest.raises(InputError, match="scale"):
        LabelMapAugmentation(scale=(1.1, 0.9))


def test_vanished_structure_is_redrawn_then_fails(monkeypatch):
    array = np.zeros((1, 16, 16), np.uint8)
    array[0, 4:12, 4:12] = SECTOR
    array[0, 7:9, 7:9] = Structure.LV_CAVITY.label
    labels = Volume(array)
    seeds: list[int] = []
    real_warp = labelmaps._warp

    def flaky_warp(values, seed, settings):
        seeds.append(seed)
        return real_warp(values, seed, settings) if len(seeds) == 3 else np.zeros_like(values)

    monkeypatch.setattr(labelmaps, "_warp", flaky_warp)
    out = augment_label_map(labels, seed=5, settings=LabelMapAugmentation(max_displacement_px=0))
    assert Structure.LV_CAVITY.label in out.array and seeds[0] == 5 and len(set(seeds)) == 3
    seeds.clear()
    monkeypatch.setattr(labelmaps, "_warp", lambda values, seed, settings: np.zeros_like(values))
    with pytest.raises(InputError, match="vanished"):
        augment_label_map(labels, seed=5)


def _paired_sample(phantom_2d, dtype=np.uint8):
    labels = phantom_2d.labels.array[:1].astype(dtype)  # (1, rows, cols) channel-first
    image = np.where(labels > 0, labels / 4.0 - 0.5, -1.0).astype(np.float32)
    return {"image": image, "labels": labels}


def test_paired_augmentation_2d(phantom_2d):
    sample = _paired_sample(phantom_2d)
    first = paired_augmentation(2, seed=3, affine_prob=1.0)(dict(sample))
    again = paired_augmentation(2, seed=3, affine_prob=1.0)(dict(sample))
    other = paired_augmentation(2, seed=4, affine_prob=1.0)(dict(sample))
    for out in (first, again):
        assert out["image"].shape == sample["image"].shape and out["labels"].shape == sample["labels"].shape
        assert out["labels"].dtype == torch.uint8
        assert set(torch.unique(out["labels"]).tolist()) <= set(np.unique(sample["labels"]).tolist())
        assert out["image"].min() >= -1.0 and out["image"].max() <= 1.0
    assert torch.equal(first["labels"], again["labels"]) and torch.equal(first["image"], again["image"])
    assert not torch.equal(first["labels"], other["labels"])


def test_paired_augmentation_3d_tensors():
    labels = torch.zeros((1, 20, 24, 28), dtype=torch.int64)
    labels[0, 5:15, 6:18, 7:21] = 2
    labels[0, 8:12, 9:15, 10:18] = 1
    sample = {"image": labels.float() / 2 - 0.5, "labels": labels}
    out = paired_augmentation(3, seed=0, affine_prob=1.0)(sample)
    assert out["labels"].shape == labels.shape and out["labels"].dtype == torch.int64
    assert set(torch.unique(out["labels"]).tolist()) <= {0, 1, 2}
    with pytest.raises(InputError):
        paired_augmentation(4)


def test_output_names():
    assert output_path("a/case.seg.nrrd", 3, "out", 5).as_posix() == "out/case_aug03.seg.nrrd"
    assert output_path("b/x.nii.gz", 0, "o", 101).as_posix() == "o/x_aug000.nii.gz"


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_augments_a_folder_in_each_format(phantom_2d, tmp_path, capsys):
    inputs = tmp_path / "in"
    for name in ("a.nii.gz", "b.seg.nrrd", "c.png"):
        write_label_map(phantom_2d.labels, inputs / name)
    (inputs / "notes.txt").write_text("not a label map")
    code, out, err = _run(["augment", inputs, "--n", "2", "--out", tmp_path / "out", "--seed", "1"], capsys)
    assert code == 0, err
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        f"{s}_aug0{i}{x}" for s, x in (("a", ".nii.gz"), ("b", ".seg.nrrd"), ("c", ".png")) for i in (0, 1)
    ]
    assert "wrote 6 files" in out
    for name in names:
        augmented = read_label_map(tmp_path / "out" / name)
        assert augmented.array.shape == phantom_2d.labels.array.shape
        assert set(np.unique(augmented.array).tolist()) <= CANONICAL


def test_cli_bad_file_writes_nothing(phantom_2d, tmp_path, capsys):
    inputs = tmp_path / "in"
    write_label_map(phantom_2d.labels, inputs / "good.nii.gz")
    write_image(Volume(np.full((1, 8, 8), 9, np.uint8)), inputs / "bad.nrrd")
    out_dir = tmp_path / "out"
    code, _, err = _run(["augment", inputs, "--n", "2", "--out", out_dir], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "9" in err
    assert not out_dir.exists() or not any(out_dir.iterdir())
    code, _, err = _run(["augment", inputs / "good.nii.gz", "--n", "0", "--out", out_dir], capsys)
    assert code == 2 and "--n" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(["augment", empty, "--out", out_dir], capsys)
    assert code == 2 and "no label files" in err


# ---- another acquisition: imaging depth (zoom) and sector opening ----


def _apex_distance(volume: Volume, sector, mask: np.ndarray) -> float:
    """Mean distance (voxels) of ``mask``'s voxels from the sector's apex, in the (i, j) plane."""
    _, rows, cols = np.nonzero(mask)
    return float(np.mean(np.hypot(cols - sector.apex_index[0], rows - sector.apex_index[1])))


@pytest.mark.parametrize("zoom", [0.75, 1.3])
def test_acquisition_zoom_scales_the_heart_about_the_apex(phantom_2d, zoom):
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of

    labels = phantom_2d.labels
    sector = sector_of(labels)
    shown = acquire(labels, Acquisition(zoom=zoom), sector, labels=True)
    assert shown.same_geometry(labels) and shown.array.dtype == labels.array.dtype
    cavity = Structure.LV_CAVITY.label
    before, after = labels.array == cavity, shown.array == cavity
    assert after.sum() / before.sum() == pytest.approx(zoom**2, rel=0.15)  # areas scale with zoom squared
    ratio = _apex_distance(shown, sector, after) / _apex_distance(labels, sector, before)
    assert ratio == pytest.approx(zoom, rel=0.05)  # about the probe, not the grid's centre
    inside = labels.array != 0
    assert np.array_equal(shown.array != 0, inside)  # the same depth and opening: the same sector
    if zoom < 1:  # deeper: the tissue the map never showed is the sector class, never a structure
        assert (shown.array[inside] != 0).all()
        assert set(np.unique(shown.array[inside & (labels.array == SECTOR)]).tolist()) >= {SECTOR}


def test_acquisition_opening_narrows_the_sector(phantom_2d):
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of

    labels = phantom_2d.labels
    sector = sector_of(labels)
    shown = acquire(labels, Acquisition(opening=0.6), sector, labels=True)
    inside_before, inside_after = labels.array != 0, shown.array != 0
    assert not (inside_after & ~inside_before).any()
    assert inside_after.sum() / inside_before.sum() == pytest.approx(0.6, abs=0.06)
    kept = inside_after
    np.testing.assert_array_equal(shown.array[kept], labels.array[kept])  # no zoom: the same anatomy
    assert acquire(labels, Acquisition(), sector, labels=True) is labels


def test_acquisition_of_an_image_is_black_where_nothing_was_acquired(phantom_2d):
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of

    labels = phantom_2d.labels
    sector = sector_of(labels)
    image = labels.with_array(np.where(labels.array != 0, 200, 0).astype(np.uint8))
    deeper = acquire(image, Acquisition(zoom=0.7), sector, labels=False)
    mask = acquire(labels, Acquisition(zoom=0.7), sector, labels=True).array
    assert deeper.array.dtype == np.uint8
    assert not deeper.array[mask == 0].any()
    # Near the probe the image is the old one shrunk; at the deepest rows of the sector nothing was seen.
    rows = np.nonzero((labels.array[0] != 0).any(axis=1))[0]
    assert deeper.array[0, rows[len(rows) // 4]].max() == 200 and deeper.array[0, rows[-2]].max() == 0


def test_acquisition_of_a_3d_pyramid(phantom_3d):
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of

    labels = phantom_3d.labels
    sector = sector_of(labels)
    assert sector.is_3d
    shown = acquire(labels, Acquisition(zoom=0.8, opening=0.8), sector, labels=True)
    cavity = Structure.LV_CAVITY.label
    assert (shown.array == cavity).sum() / (labels.array == cavity).sum() == pytest.approx(0.8**3, rel=0.2)
    assert (shown.array != 0).sum() < (labels.array != 0).sum()


def test_bad_acquisitions_are_refused():
    from EchoSynthLib.augmentation.acquisition import Acquisition

    for bad in ({"zoom": 0.0}, {"zoom": 9.0}, {"opening": 1.5}, {"opening": 0.0}):
        with pytest.raises(InputError):
            Acquisition(**bad)
    with pytest.raises(InputError, match="zoom"):
        LabelMapAugmentation(zoom=(1.2, 0.9))


def test_varied_acquisition_gives_new_anatomies_depths_and_sectors_of_their_own(phantom_2d):
    labels = phantom_2d.labels
    varied = labelmaps.VARIED_ACQUISITION
    plain = augment_label_map(labels, 5)
    first, again = augment_label_map(labels, 5, varied), augment_label_map(labels, 5, varied)
    np.testing.assert_array_equal(first.array, again.array)  # the seed draws the acquisition too
    assert set(np.unique(first.array).tolist()) >= HEART
    sectors = {int((augment_label_map(labels, s, varied).array != 0).sum()) for s in range(4)}
    assert len(sectors) > 1 and max(sectors) <= int((labels.array != 0).sum())
    assert not np.array_equal(first.array, plain.array)
    # the plain warp is not changed by the acquisition's draws (the same seed, another stream)
    np.testing.assert_array_equal(plain.array, augment_label_map(labels, 5, LabelMapAugmentation()).array)


def test_cli_acquisition_varied(phantom_2d, tmp_path, capsys):
    path = tmp_path / "in" / "a.nii.gz"
    write_label_map(phantom_2d.labels, path)
    runs = {}
    for acquisition in ("same", "varied"):
        out = tmp_path / acquisition
        code, _, err = _run(["augment", path, "--n", "3", "--out", out, "--acquisition", acquisition], capsys)
        assert code == 0, err
        runs[acquisition] = [read_label_map(p).array for p in sorted(out.iterdir())]
    inside = int((phantom_2d.labels.array != 0).sum())
    assert all(int((a != 0).sum()) == inside for a in runs["same"])
    assert any(int((a != 0).sum()) < inside for a in runs["varied"])
    code, _, err = _run(["augment", path, "--out", tmp_path / "x", "--acquisition", "wide"], capsys)
    assert code == 2 and "acquisition" in err


def test_synthesize_draws_new_anatomies_in_their_own_acquisition(phantom_2d, tmp_path, capsys):
    from EchoSynthLib.data.io import read_image

    path = tmp_path / "in" / "a.nii.gz"
    write_label_map(phantom_2d.labels, path)
    out = tmp_path / "out"
    args = ["synthesize", "--model", "simulator", "--labels", path, "--out", out, "--augment", "2"]
    code, _, err = _run([*args, "--acquisition", "varied"], capsys)
    assert code == 0, err
    inside = int((phantom_2d.labels.array != 0).sum())
    sectors = []
    for k in range(2):
        labels = read_label_map(out / f"a_aug0{k}.nii.gz")
        image = read_image(out / f"a_aug0{k}_synth00.nii.gz")
        assert not image.array[labels.array == 0].any()  # the image is drawn in the new anatomy's sector
        sectors.append(int((labels.array != 0).sum()))
    assert max(sectors) <= inside and min(sectors) < inside
    code, _, err = _run([*args[:6], tmp_path / "plain", "--acquisition", "varied"], capsys)
    assert code == 0 and "--acquisition is used only with --augment" in err


def test_varied_acquisition_of_a_map_whose_sector_cannot_be_fitted_says_so(phantom_2d, tmp_path):
    array = phantom_2d.labels.array.copy()
    array[array == SECTOR] = 0
    array[(array == 0)] = SECTOR  # the whole grid is "sector": no side edges to fit
    with pytest.raises(InputError, match="another acquisition needs the map's sector"):
        augment_label_map(phantom_2d.labels.with_array(array), 0, labelmaps.VARIED_ACQUISITION)
    from EchoSynthLib.augmentation import augment_files

    write_label_map(phantom_2d.labels.with_array(array), tmp_path / "whole.nii.gz")
    with pytest.raises(InputError, match=r"whole\.nii\.gz: another acquisition"):
        augment_files(tmp_path / "whole.nii.gz", 1, tmp_path / "out", settings=labelmaps.VARIED_ACQUISITION)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_acquisition_zooms_a_plane_in_its_own_axes_whatever_its_direction(phantom_2d):
    """A 2D map whose rows run along another physical axis (a kj cut, a Slicer label map) is zoomed as
    the same map lying in the xy plane: the zoom follows the map's axes, not physical x and y."""
    from EchoSynthLib.augmentation.acquisition import Acquisition, acquire, sector_of

    flat = phantom_2d.labels
    upright = Volume(flat.array, flat.spacing, flat.origin, (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0))
    shown = [acquire(m, Acquisition(zoom=1.3), sector_of(m), labels=True).array for m in (flat, upright)]
    np.testing.assert_array_equal(shown[1], shown[0])


def test_synthesize_seeds_each_files_new_anatomies_as_augment_does(phantom_2d, tmp_path, capsys):
    from EchoSynthLib.augmentation.files import file_seed
    from EchoSynthLib.augmentation.labelmaps import VARIED_ACQUISITION, variant_seed

    inputs = tmp_path / "in"
    for name in ("a.nii.gz", "b.nii.gz"):
        write_label_map(phantom_2d.labels, inputs / name)
    out = tmp_path / "out"
    command = ["synthesize", "--model", "simulator", "--labels", inputs, "--out", out, "--augment", "1"]
    code, _, err = _run([*command, "--acquisition", "varied", "--seed", "3"], capsys)
    assert code == 0, err
    a, b = (read_label_map(out / f"{s}_aug00.nii.gz").array for s in "ab")
    assert not np.array_equal(a, b)  # the same map in two files: two anatomies, two acquisitions
    expected = augment_label_map(
        read_label_map(inputs / "a.nii.gz"),
        variant_seed(file_seed(3, inputs / "a.nii.gz"), 0),
        VARIED_ACQUISITION,
    )
    np.testing.assert_array_equal(a, expected.array)  # what `augment --seed 3` makes of a.nii.gz
