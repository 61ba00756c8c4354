"""The training cache: exact round trip, patient-disjoint splits, no-op reruns, skips, torch loader, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.dataset import CachedPairs, make_loader
from EchoSynthLib.cache.store import MANIFEST, CacheIndex, build_cache
from EchoSynthLib.cli.main import main
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.prepare import PrepareSettings, prepare_case
from EchoSynthLib.simulation import simulate_bmode

PATIENTS = 6
SETTINGS = PrepareSettings(size=(48, 48))


@pytest.fixture(scope="module")
def echo_folder(tmp_path_factory):
    """A folder dataset: PATIENTS patients x (ED, ES), simulated echo beside its label map (no sector)."""
    root = tmp_path_factory.mktemp("folder")
    grid = PhantomGrid.for_view("4CH", size=64)
    for patient in range(PATIENTS):
        for phase in ("ED", "ES"):
            phantom = phantom_label_map("4CH", phase, seed=patient, grid=grid)
            name = f"pt{patient:02d}_{phase}"
            write_image(simulate_bmode(phantom.labels, seed=patient), root / f"{name}.nii.gz")
            labels = phantom.labels.array.copy()
            labels[labels == Structure.SECTOR.label] = 0
            write_label_map(phantom.labels.with_array(labels), root / f"{name}_label.nii.gz")
    return root


def _build(root, out, **kwargs):
    return build_cache(scan_dataset("folder", root), out, kwargs.pop("settings", SETTINGS), **kwargs)


def test_round_trip_is_exact_and_splits_share_no_patient(echo_folder, tmp_path):
    result = _build(echo_folder, tmp_path / "cache")
    assert result.rebuilt
    cache = CacheIndex.open(tmp_path / "cache")
    manifest = json.loads((tmp_path / "cache" / MANIFEST).read_text())
    assert (
        manifest["counts"]["train"]["patients"]
        + manifest["counts"]["val"]["patients"]
        + manifest["counts"]["test"]["patients"]
        == PATIENTS
    )
    assert manifest["classes"]["4"] == "sector" and manifest["shape"] == [48, 48]
    patients = [{e["patient_id"] for e in cache.cases(s)} for s in ("train", "val", "test")]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    scan = scan_dataset("folder", echo_folder)
    refs = {ref.case_id: ref for ref in scan.cases}
    for split in ("train", "val", "test"):
        for entry in cache.cases(split):
            image, labels = cache.load(entry)
            expected = prepare_case(refs[entry["case_id"]].load(), SETTINGS)
            np.testing.assert_array_equal(image, expected.image)
            np.testing.assert_array_equal(labels, expected.labels)
            assert image.dtype == np.float32 and labels.dtype == np.uint8
    assert len(manifest["sources"]) == 2 * 2 * PATIENTS
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"].values())


def test_rerun_is_a_no_op_until_inputs_or_settings_change(echo_folder, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    _build(echo_folder, out)
    first = (out / MANIFEST).stat().st_mtime_ns
    assert not _build(echo_folder, out).rebuilt
    assert (out / MANIFEST).stat().st_mtime_ns == first
    assert _build(echo_folder, out, settings=PrepareSettings(size=(32, 32))).rebuilt
    assert CacheIndex.open(out).manifest.shape == (32, 32)
    # A changed source file (same size, new content) is noticed through its new modification time.
    source = echo_folder / "pt00_ED.nii.gz"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        assert _build(echo_folder, out, settings=PrepareSettings(size=(32, 32))).rebuilt
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_unusable_cases_are_skipped_with_reasons_or_fail_when_strict(echo_folder, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for path in sorted(echo_folder.iterdir())[:8]:
        (root / path.name).write_bytes(path.read_bytes())
    (root / "pt00_ED_label.nii.gz").write_bytes(b"not an image")  # corrupt label
    (root / "orphan.nii.gz").write_bytes((root / "pt00_ES.nii.gz").read_bytes())  # image without labels
    result = _build(root, tmp_path / "cache")
    reasons = {s["source"]: s["reason"] for s in result.manifest.skipped}
    assert "cannot be read" in reasons["pt00_ED"]
    assert any("no label file" in r for r in reasons.values())
    assert sum(c["cases"] for c in result.manifest.counts.values()) == 3
    with pytest.raises(InputError, match="cannot be read"):
        _build(root, tmp_path / "strict", strict=True)
    assert not (tmp_path / "strict").exists()  # nothing partial


def test_refuses_to_replace_a_foreign_folder_and_reports_missing_caches(echo_folder, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="did not write; refusing to replace it"):
        _build(echo_folder, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="no EchoSynth cache"):
        CacheIndex.open(tmp_path / "nowhere")
    (foreign / MANIFEST).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(InputError, match="format version"):
        CacheIndex.open(foreign)


def test_loader_is_seeded_and_one_hot(echo_folder, tmp_path):
    _build(echo_folder, tmp_path / "cache")
    dataset = CachedPairs(tmp_path / "cache", "train", one_hot=True)
    sample = dataset[0]
    assert sample["image"].shape == (1, 48, 48) and sample["labels"].shape == (5, 48, 48)
    assert torch.all(sample["labels"].sum(0) == 1)

    def order(seed):
        return [c for batch in make_loader(dataset, 2, seed=seed) for c in batch["case_id"]]

    assert order(1) == order(1) and sorted(order(1)) == sorted(order(2))
    batch = next(iter(make_loader(dataset, 3, shuffle=False, workers=0)))
    assert batch["image"].shape == (3, 1, 48, 48) and batch["labels"].dtype == torch.float32
    all_train = PrepareSettings(size=(48, 48), split_fractions={"train": 1.0})
    _build(echo_folder, tmp_path / "train_only", settings=all_train)
    with pytest.raises(InputError, match="val split has no case"):
        CachedPairs(tmp_path / "train_only", "val")


def test_prepare_cli_writes_then_reports_up_to_date(echo_folder, tmp_path, capsys):
    out = tmp_path / "cache"
    args = ["prepare", "folder", str(echo_folder), "--out", str(out), "--size", "40x32", "--seed", "2"]
    assert main(args) == 0
    assert CacheIndex.open(out).manifest.shape == (32, 40)  # WxH on the command line, (rows, cols) stored
    assert main(args) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["prepare", "folder", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert (
        main(["prepare", "camus224", str(echo_folder), "--out", str(tmp_path / "x"), "--half-sequences"]) == 2
    )
    assert "--half-sequences applies to camus" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_demo_style_names_pair_up(echo_folder, tmp_path):
    """``NAME_image.ext`` + ``NAME_labels.seg.nrrd`` (what ``echosynth demo`` writes) form one case."""
    from EchoSynthLib.data.io import read_image, read_label_map

    image = read_image(echo_folder / "pt01_ED.nii.gz")
    labels = read_label_map(echo_folder / "pt01_ED_label.nii.gz")
    write_image(image, tmp_path / "a4c_ed_image.nrrd")
    write_label_map(labels, tmp_path / "a4c_ed_labels.seg.nrrd")
    scan = scan_dataset("folder", tmp_path)
    assert [ref.case_id for ref in scan.cases] == ["a4c_ed"] and not scan.skipped
    np.testing.assert_array_equal(scan.cases[0].load().labels.array, labels.array)
