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
