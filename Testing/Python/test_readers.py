"""Dataset readers (CAMUS .mhd/.nii.gz, camus224 .npz, MITEA/nnU-Net, generic folder) on tiny fixtures.

Every fixture is written here, in the dataset's own layout, with the library's writers (or SimpleITK /
numpy where the real files are 2D or .npz). The real data are never read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from EchoSynthLib.data.cases import Case, Scan
from EchoSynthLib.data.io import Segment, to_sitk, write_image, write_label_map, write_segmentation
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.errors import InputError

H, W = 30, 40  # 2D fixtures: rows (depth), columns (lateral)
MHD_SPACING = (0.3, 0.15)  # anisotropic, exact in a MetaImage header
NII_SPACING = (0.25, 0.5)  # anisotropic and exact in float32 (NIfTI stores float32)
INFO_LVEF = (
    "ED: 1\nES: 14\nNbFrame: 14\nSex: F\nAge: 68\nImageQuality: Medium\n"
    "LVedv: 120.5\nLVesv: 60.2\nLVef: 50.0\n"
)
INFO_EF = "ED: 3\nES: 11\nNbFrame: 18\nSex: M\nAge: 54\nImageQuality: Good\nEF: 55.5\nFrameRate: 41\n"
HALF_FRAMES = 3


# ---------------------------------------------------------------------------------------------------------
# Fixture drawing and checks
# ---------------------------------------------------------------------------------------------------------


def camus_labels(grow: int = 0) -> np.ndarray:
    """CAMUS values on (H, W): myocardium (2) around the cavity (1), left atrium (3) below."""
    yy, xx = np.mgrid[:H, :W]
    labels = np.zeros((H, W), np.uint8)
    labels[((xx - 20) / 9) ** 2 + ((yy - 12) / (9 + grow)) ** 2 <= 1] = 2
    labels[((xx - 20) / 6) ** 2 + ((yy - 12) / (6 + grow)) ** 2 <= 1] = 1
    labels[((xx - 20) / 7) ** 2 + ((yy - 25) / 3) ** 2 <= 1] = 3
    return labels


def fan_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A bright fan (apex at the top centre) with brighter myocardium, on black."""
    yy, xx = np.mgrid[:H, :W]
    angle = np.arctan2(xx - W / 2, yy + 1e-9)
    fan = (np.hypot(xx - W / 2, yy) < H - 1) & (np.abs(angle) < 0.8)
    noise = np.random.default_rng(seed).integers(0, 20, (H, W))
    image = np.where(fan, 90 + noise, 0) + np.where(labels == 2, 100, 0)
    return image.clip(0, 255).astype(np.uint8)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under root with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def load_all(scan: Scan) -> dict[str, Case]:
    """Load every case of a scan, checking that images and labels share one grid."""
    cases = {}
    for ref in scan.cases:
        case = ref.load()
        assert case.case_id == ref.case_id and case.patient_id == ref.patient_id
        assert case.image.same_geometry(case.labels, tolerance=1e-6), ref.case_id
        assert set(np.unique(case.labels.array)) <= {0, 1, 2, 3, 4}
        cases[ref.case_id] = case
    for path in scan.source_files():
        assert path.is_file(), path
    return cases


def scan_untouched(dataset: str, root: Path, **options) -> tuple[Scan, dict[str, Case]]:
    """Scan and load everything, asserting nothing under root was created, removed or rewritten."""
    before = snapshot(root)
    scan = scan_dataset(dataset, root, **options)
    cases = load_all(scan)
    assert snapshot(root) == before
    return scan, cases


def write_2d(array: np.ndarray, spacing: tuple[float, float], path: Path) -> None:
    """A true 2D file (as the CAMUS NIfTI release ships its ED/ES frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(Volume.from_2d(array, spacing), as_2d=True), str(path), True)


# ---------------------------------------------------------------------------------------------------------
# CAMUS (original layouts)
# ---------------------------------------------------------------------------------------------------------


def make_camus(root: Path, half_sequence: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """patient0001 in .mhd/.raw (2019 release), database_nifti/patient0002 in .nii.gz, split lists.

    Returns {case id: (image, CAMUS labels)} as written (2D arrays).
    """
    expected = {}
    for index, (view, phase) in enumerate([(v, p) for v in ("2CH", "4CH") for p in ("ED", "ES")]):
        for patient, folder, ext in (
            ("patient0001", root / "patient0001", ".mhd"),
            ("patient0002", root / "database_nifti" / "patient0002", ".nii.gz"),
        ):
            name = f"{patient}_{view}_{phase}"
            labels = camus_labels(grow=index)
            image = fan_image(labels, seed=index + (10 if ext == ".mhd" else 20))
            if ext == ".mhd":
                write_image(Volume.from_2d(image, MHD_SPACING), folder / f"{name}{ext}")
                write_image(Volume.from_2d(labels, MHD_SPACING), folder / f"{name}_gt{ext}")
            else:
                write_2d(image, NII_SPACING, folder / f"{name}{ext}")
                write_2d(labels, NII_SPACING, folder / f"{name}_gt{ext}")
            expected[name] = (image, labels)
    (root / "patient0001" / "Info_2CH.cfg").write_text(INFO_LVEF)
    (root / "patient0001" / "Info_4CH.cfg").write_text(INFO_EF)
    nifti = root / "database_nifti" / "patient0002"
    (nifti / "Info_2CH.cfg").write_text(INFO_EF)
    if half_sequence:
        labels = np.stack([camus_labels(grow=t) for t in range(HALF_FRAMES)])  # frames along the 3rd axis
        images = np.stack([fan_image(labels[t], seed=40 + t) for t in range(HALF_FRAMES)])
        write_image(Volume(images, (*NII_SPACING, 1.0)), nifti / "patient0002_2CH_half_sequence.nii.gz")
        write_image(Volume(labels, (*NII_SPACING, 1.0)), nifti / "patient0002_2CH_half_sequence_gt.nii.gz")
        for t in range(HALF_FRAMES):
            expected[f"patient0002_2CH_hs{t:02d}"] = (images[t], labels[t])
    splits = root / "database_split"
    splits.mkdir()
    (splits / "subgroup_training.txt").write_text("patient0001\npatient0003\n")
    (splits / "subgroup_validation.txt").write_text("patient0002\n")
    (splits / "subgroup_testing.txt").write_text("patient0004\n")
    return expected


def test_camus_both_layouts_views_phases_labels_and_spacing(tmp_path):
    expected = make_camus(tmp_path)
    scan, cases = scan_untouched("camus", tmp_path)
    ed_es = {k for k in expected if "_hs" not in k}
    assert set(cases) == ed_es  # half-sequences are off by default
    assert scan.skipped == []
    for case_id, (image, labels) in expected.items():
        if case_id not in cases:
            continue
        case = cases[case_id]
        patient, view, phase = case_id.split("_")
        assert case.patient_id == patient
        assert case.metadata["view"] == view and case.metadata["phase"] == phase
        assert case.metadata["dataset"] == "camus"
        assert case.image.is_2d and case.image.array.shape == (1, H, W)
        np.testing.assert_array_equal(case.image.array[0], image)
        # CAMUS 1 LV cavity, 2 myocardium, 3 left atrium -> canonical 1, 2, 3.
        for camus_value, canonical in ((0, 0), (1, 1), (2, 2), (3, 3)):
            np.testing.assert_array_equal(case.labels.array[0] == canonical, labels == camus_value)
        assert case.labels.array.dtype == np.uint8
        spacing = MHD_SPACING if patient == "patient0001" else NII_SPACING
        assert case.image.spacing[:2] == spacing  # anisotropic spacing kept exactly
        assert case.labels.spacing[:2] == spacing


def test_camus_info_cfg_and_sources(tmp_path):
    make_camus(tmp_path)
    scan, cases = scan_untouched("camus", tmp_path)
    lvef = cases["patient0001_2CH_ED"].metadata
    assert lvef["ed_frame"] == 1 and lvef["es_frame"] == 14 and lvef["n_frames"] == 14
    assert lvef["age"] == 68 and isinstance(lvef["age"], int)
    assert lvef["sex"] == "F" and lvef["image_quality"] == "Medium"
    assert lvef["ef"] == 50.0 and lvef["edv"] == 120.5 and lvef["esv"] == 60.2
    ef = cases["patient0001_4CH_ES"].metadata  # the "EF:" variant
    assert ef["ed_frame"] == 3 and ef["es_frame"] == 11 and ef["age"] == 54 and ef["sex"] == "M"
    assert ef["ef"] == 55.5 and ef["image_quality"] == "Good" and ef["fps"] == 41.0
    assert "ef" not in cases["patient0002_4CH_ED"].metadata  # no Info_4CH.cfg for patient0002
    assert cases["patient0002_2CH_ES"].metadata["ef"] == 55.5
    # Sources: header, its data file (.zraw as SimpleITK compresses), label pair and Info file.
    refs = {ref.case_id: ref for ref in scan.cases}
    names = {p.name for p in refs["patient0001_2CH_ED"].sources}
    assert {"patient0001_2CH_ED.mhd", "patient0001_2CH_ED_gt.mhd", "Info_2CH.cfg"} <= names
    assert any(n.startswith("patient0001_2CH_ED.") and n.endswith("raw") for n in names)
    assert any(n.startswith("patient0001_2CH_ED_gt.") and n.endswith("raw") for n in names)
    assert {p.name for p in refs["patient0002_4CH_ED"].sources} == {
        "patient0002_4CH_ED.nii.gz",
        "patient0002_4CH_ED_gt.nii.gz",
    }


def test_camus_half_sequences_only_on_request(tmp_path):
    expected = make_camus(tmp_path)
    scan, cases = scan_untouched("camus", tmp_path, half_sequences=True)
    frames = sorted(k for k in cases if "_hs" in k)
    assert frames == [f"patient0002_2CH_hs{t:02d}" for t in range(HALF_FRAMES)]
    assert len(cases) == 8 + HALF_FRAMES
    for t, case_id in enumerate(frames):
        case = cases[case_id]
        image, labels = expected[case_id]
        assert case.patient_id == "patient0002"
        assert case.metadata["frame"] == t and case.metadata["view"] == "2CH"
        assert case.metadata["ef"] == 55.5  # Info_2CH.cfg applies to the half-sequence too
        assert case.image.array.shape == (1, H, W)
        assert case.image.spacing[:2] == NII_SPACING
        np.testing.assert_array_equal(case.image.array[0], image)
        np.testing.assert_array_equal(case.labels.array[0], labels)
    refs = {ref.case_id: ref for ref in scan.cases}
    assert refs[frames[0]].split == "val"


def test_camus_half_sequence_without_gt_is_skipped(tmp_path):
    make_camus(tmp_path)
    (tmp_path / "database_nifti/patient0002/patient0002_2CH_half_sequence_gt.nii.gz").unlink()
    scan = scan_dataset("camus", tmp_path, half_sequences=True)
    assert not any("_hs" in ref.case_id for ref in scan.cases)
    assert [s.source for s in scan.skipped] == [
        str(tmp_path / "database_nifti/patient0002/patient0002_2CH_half_sequence.nii.gz")
    ]
    assert "_gt" in scan.skipped[0].reason


def test_camus_split_lists(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    splits = {ref.case_id: ref.split for ref in scan_dataset("camus", tmp_path).cases}
    assert {s for k, s in splits.items() if k.startswith("patient0001")} == {"train"}
    assert {s for k, s in splits.items() if k.startswith("patient0002")} == {"val"}
    # Scanning one release folder still finds the lists beside it (in the parent).
    inner = scan_dataset("camus", tmp_path / "database_nifti")
    assert {ref.split for ref in inner.cases} == {"val"}
    assert {ref.patient_id for ref in inner.cases} == {"patient0002"}
    # Without lists the dataset defines no split.
    for path in (tmp_path / "database_split").iterdir():
        path.unlink()
    (tmp_path / "database_split").rmdir()
    assert {ref.split for ref in scan_dataset("camus", tmp_path).cases} == {None}


def test_camus_missing_gt_is_skipped(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    (tmp_path / "patient0001/patient0001_4CH_ES_gt.mhd").unlink()
    scan = scan_dataset("camus", tmp_path)
    ids = {ref.case_id for ref in scan.cases}
    assert "patient0001_4CH_ES" not in ids and len(ids) == 7
    assert len(scan.skipped) == 1
    skipped = scan.skipped[0]
    assert skipped.source.endswith("patient0001_4CH_ES")
    assert "patient0001_4CH_ES_gt" in skipped.reason


def test_camus_unknown_label_value_raises_on_load(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    bad = camus_labels()
    bad[0, 0] = 7
    write_image(Volume.from_2d(bad, MHD_SPACING), tmp_path / "patient0001/patient0001_2CH_ED_gt.mhd")
    refs = {ref.case_id: ref for ref in scan_dataset("camus", tmp_path).cases}  # the scan reads no voxels
    with pytest.raises(InputError, match=r"\b7\b") as error:
        refs["patient0001_2CH_ED"].load()
    assert "patient0001_2CH_ED_gt" in str(error.value)
    refs["patient0001_2CH_ES"].load()  # the other cases are fine


def test_camus_shape_mismatch_raises_on_load(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    wrong = np.zeros((H, W + 2), np.uint8)
    write_2d(wrong, NII_SPACING, tmp_path / "database_nifti/patient0002/patient0002_4CH_ES_gt.nii.gz")
    refs = {ref.case_id: ref for ref in scan_dataset("camus", tmp_path).cases}
    with pytest.raises(InputError, match="patient0002_4CH_ES"):
        refs["patient0002_4CH_ES"].load()


def test_camus_spacing_mismatch_raises_on_load(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    write_image(
        Volume.from_2d(camus_labels(), (0.3, 0.3)), tmp_path / "patient0001/patient0001_2CH_ES_gt.mhd"
    )
    refs = {ref.case_id: ref for ref in scan_dataset("camus", tmp_path).cases}
    with pytest.raises(InputError, match="grids differ"):
        refs["patient0001_2CH_ES"].load()


def test_camus_wrong_roots(tmp_path):
    with pytest.raises(InputError, match="no such folder"):
        scan_dataset("camus", tmp_path / "missing")
    (tmp_path / "file.txt").write_text("not a dataset")
    with pytest.raises(InputError, match="not a folder"):
        scan_dataset("camus", tmp_path / "file.txt")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    with pytest.raises(InputError, match="no CAMUS cases found") as error:
        scan_dataset("camus", tmp_path / "empty")
    assert "patientNNNN" in str(error.value)
    # Patients with images but no label maps at all: the message says why.
    write_image(
        Volume.from_2d(camus_labels(), MHD_SPACING), tmp_path / "nogt/patient0009/patient0009_2CH_ED.mhd"
    )
    with pytest.raises(InputError, match="patient0009_2CH_ED_gt"):
        scan_dataset("camus", tmp_path / "nogt")


def test_camus_info_cfg_malformed_raises_on_load(tmp_path):
    make_camus(tmp_path, half_sequence=False)
    (tmp_path / "patient0001/Info_2CH.cfg").write_text("ED: one\n")
    refs = {ref.case_id: ref for ref in scan_dataset("camus", tmp_path).cases}
    with pytest.raises(InputError, match=r"Info_2CH\.cfg.*ED"):
        refs["patient0001_2CH_ED"].load()


# ---------------------------------------------------------------------------------------------------------
# camus224 (resampled arrays)
# ---------------------------------------------------------------------------------------------------------


def write_npz(path: Path, case_ids: list[str], **override) -> tuple[np.ndarray, np.ndarray]:
    labels = np.stack([camus_labels(grow=i % 3) for i in range(len(case_ids))])
    images = np.stack([fan_image(labels[i], seed=i) for i in range(len(case_ids))])
    arrays = {"images": images, "labels": labels, "ids": np.array(case_ids)}
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return images, labels


def test_camus224_splits_ids_metadata_and_unit_spacing(tmp_path):
    train_ids = ["patient0012_4CH_ED", "patient0012_4CH_ES", "patient0013_2CH_ED"]
    train_images, train_labels = write_npz(tmp_path / "camus224_train.npz", train_ids)
    write_npz(tmp_path / "camus224_val.npz", ["patient0050_2CH_ES"])
    (tmp_path / "other.npz").write_bytes(b"ignored: not a camus224 file name")
    scan, cases = scan_untouched("camus224", tmp_path)
    assert [ref.case_id for ref in scan.cases] == [*train_ids, "patient0050_2CH_ES"]
    splits = {ref.case_id: ref.split for ref in scan.cases}
    assert splits == {**dict.fromkeys(train_ids, "train"), "patient0050_2CH_ES": "val"}
    assert {ref.case_id: ref.patient_id for ref in scan.cases}["patient0013_2CH_ED"] == "patient0013"
    for index, case_id in enumerate(train_ids):
        case = cases[case_id]
        assert case.patient_id == case_id[:11]
        assert case.metadata["view"] == case_id[12:15] and case.metadata["phase"] == case_id[-2:]
        assert case.metadata["split"] == "train" and case.metadata["index"] == index
        assert case.image.spacing == (1.0, 1.0, 1.0) and case.image.origin == (0.0, 0.0, 0.0)
        np.testing.assert_array_equal(case.image.array[0], train_images[index])
        np.testing.assert_array_equal(case.labels.array[0], train_labels[index])  # CAMUS = canonical 0..3
    assert cases["patient0050_2CH_ES"].metadata["split"] == "val"
    assert scan.source_files() == [tmp_path / "camus224_train.npz", tmp_path / "camus224_val.npz"]


def test_camus224_missing_ids_array(tmp_path):
    write_npz(tmp_path / "camus224_train.npz", ["patient0001_2CH_ED"], ids=None)
    with pytest.raises(InputError, match=r"missing array\(s\) \['ids'\]") as error:
        scan_dataset("camus224", tmp_path)
    assert "cannot be read" not in str(error.value)  # a clear message, not a wrapped one


def test_camus224_bad_id_is_skipped_and_bad_arrays_raise(tmp_path):
    write_npz(tmp_path / "camus224_train.npz", ["patient0001_2CH_ED", "case7", "patient0001_3CH_ED"])
    scan = scan_dataset("camus224", tmp_path)
    assert [ref.case_id for ref in scan.cases] == ["patient0001_2CH_ED"]
    assert [s.source.rsplit(":", 1)[1] for s in scan.skipped] == ["case7", "patient0001_3CH_ED"]
    assert all("patientNNNN" in s.reason for s in scan.skipped)
    # Mismatched shapes are reported at scan time; unknown label values at load time.
    write_npz(tmp_path / "camus224_val.npz", ["patient0002_2CH_ED"], labels=np.zeros((1, H, W + 1), np.uint8))
    with pytest.raises(InputError, match="do not match"):
        scan_dataset("camus224", tmp_path)
    bad = np.stack([camus_labels()])
    bad[0, 0, 0] = 9
    write_npz(tmp_path / "camus224_val.npz", ["patient0002_2CH_ED"], labels=bad)
    refs = {ref.case_id: ref for ref in scan_dataset("camus224", tmp_path).cases}
    with pytest.raises(InputError, match=r"\b9\b"):
        refs["patient0002_2CH_ED"].load()
    (tmp_path / "camus224_val.npz").write_bytes(b"garbage")
    with pytest.raises(InputError, match=r"cannot be read as a \.npz"):
        scan_dataset("camus224", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# MITEA / nnU-Net pairs
# ---------------------------------------------------------------------------------------------------------

N3 = 16
SPACING_3D = (0.5, 0.75, 1.25)  # float32-exact
ORIGIN_3D = (-4.0, 2.5, 10.0)


def sphere_labels(myo: int, cavity: int, radius: float = 6.0) -> np.ndarray:
    """A 16^3 shell of ``myo`` around a ball of ``cavity``."""
    zz, yy, xx = np.mgrid[:N3, :N3, :N3]
    r = np.sqrt((xx - 8) ** 2 + (yy - 8) ** 2 + (zz - 8) ** 2)
    labels = np.zeros((N3, N3, N3), np.uint8)
    labels[r <= radius] = myo
    labels[r <= radius - 2] = cavity
    return labels


def write_pair(image_dir: Path, label_dir: Path | None, case: str, labels: np.ndarray, seed: int = 0) -> None:
    image = np.random.default_rng(seed).random((N3, N3, N3)).astype(np.float32) + labels
    write_image(Volume(image, SPACING_3D, ORIGIN_3D), image_dir / f"{case}_0000.nii.gz")
    if label_dir is not None:
        write_image(Volume(labels, SPACING_3D, ORIGIN_3D), label_dir / f"{case}.nii.gz")


def make_nnunet(root: Path) -> None:
    """File label values 1 and 2 (which structure each is depends on the test's label description)."""
    labels = sphere_labels(myo=1, cavity=2)
    write_pair(root / "imagesTr", root / "labelsTr", "case_001_ED", labels, 1)
    write_pair(root / "imagesTr", root / "labelsTr", "case_001_ES", sphere_labels(1, 2, radius=5), 2)
    write_pair(root / "imagesTr", root / "labelsTr", "MITEA_007_scan1_ED", labels, 3)
    write_pair(root / "imagesTs", root / "labelsTs", "case_002_ED", labels, 4)


def test_mitea_pairs_splits_patients_and_default_schema(tmp_path):
    make_nnunet(tmp_path)
    write_pair(tmp_path / "imagesTr", None, "case_003_ED", sphere_labels(1, 2), 5)  # no label
    (tmp_path / "imagesTr" / "._case_001_ED_0000.nii.gz").write_bytes(b"macOS resource fork")  # ignored
    scan, cases = scan_untouched("mitea", tmp_path)
    assert sorted(cases) == ["MITEA_007_scan1_ED", "case_001_ED", "case_001_ES", "case_002_ED"]
    refs = {ref.case_id: ref for ref in scan.cases}
    assert {k: r.split for k, r in refs.items()} == {
        "MITEA_007_scan1_ED": None,
        "case_001_ED": None,
        "case_001_ES": None,
        "case_002_ED": "test",
    }
    assert {k: r.patient_id for k, r in refs.items()} == {
        "MITEA_007_scan1_ED": "MITEA_007",
        "case_001_ED": "case_001",
        "case_001_ES": "case_001",
        "case_002_ED": "case_002",
    }
    assert [Path(s.source).name for s in scan.skipped] == ["case_003_ED_0000.nii.gz"]
    assert "case_003_ED.nii.gz" in scan.skipped[0].reason
    # MITEA default: 1 myocardium, 2 cavity -> canonical 2, 1.
    case = cases["case_001_ED"]
    np.testing.assert_array_equal(case.labels.array, sphere_labels(myo=2, cavity=1))
    assert case.image.spacing == SPACING_3D and case.image.origin == ORIGIN_3D
    assert case.image.array.shape == (N3, N3, N3)
    assert {p.name for p in refs["case_002_ED"].sources} == {"case_002_ED_0000.nii.gz", "case_002_ED.nii.gz"}


@pytest.mark.parametrize(
    ("labels_json", "myo_value"),
    [
        ({"background": 0, "LV cavity": 1, "LV myocardium": 2}, 2),  # nnU-Net v2
        ({"0": "background", "1": "myocardium", "2": "cavity"}, 1),  # nnU-Net v1
    ],
)
def test_mitea_dataset_json_maps_by_name(tmp_path, labels_json, myo_value):
    make_nnunet(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"name": "tiny", "labels": labels_json}))
    scan, cases = scan_untouched("mitea", tmp_path)
    cavity_value = 3 - myo_value
    # The file holds 1 in the shell and 2 in the ball: which is which comes from dataset.json.
    expected = np.zeros((N3, N3, N3), np.uint8)
    written = sphere_labels(myo=1, cavity=2)
    expected[written == myo_value] = 2
    expected[written == cavity_value] = 1
    np.testing.assert_array_equal(cases["case_001_ED"].labels.array, expected)
    assert tmp_path / "dataset.json" in scan.source_files()


def test_mitea_explicit_label_names_override_dataset_json(tmp_path):
    make_nnunet(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "myocardium"}}))
    _, cases = scan_untouched("mitea", tmp_path, label_names={"myocardium": 2, "cavity": 1})
    # The file's shell (1) is now the cavity and its ball (2) the myocardium: canonical 1 and 2.
    np.testing.assert_array_equal(cases["case_001_ED"].labels.array, sphere_labels(myo=1, cavity=2))


def test_mitea_unknown_structure_names(tmp_path):
    make_nnunet(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "right ventricle": 1}}))
    with pytest.raises(InputError, match="right ventricle") as error:
        scan_dataset("mitea", tmp_path)
    assert "dataset.json" in str(error.value)
    with pytest.raises(InputError, match="aorta"):
        scan_dataset("mitea", tmp_path, label_names={"aorta": 1})
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match=r"dataset\.json"):
        scan_dataset("mitea", tmp_path)


def test_mitea_value_not_in_schema_raises_on_load(tmp_path):
    make_nnunet(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "LV cavity": 2}}))
    refs = {ref.case_id: ref for ref in scan_dataset("mitea", tmp_path).cases}
    with pytest.raises(InputError, match=r"\[1\]"):
        refs["case_001_ED"].load()


def test_mitea_patient_pattern(tmp_path):
    make_nnunet(tmp_path)
    scan = scan_dataset("mitea", tmp_path, patient_pattern=r"^([A-Za-z]+)_")
    assert {ref.case_id: ref.patient_id for ref in scan.cases} == {
        "MITEA_007_scan1_ED": "MITEA",
        "case_001_ED": "case",
        "case_001_ES": "case",
        "case_002_ED": "case",
    }
    with pytest.raises(InputError, match="not a valid regular expression"):
        scan_dataset("mitea", tmp_path, patient_pattern=r"^(case")
    with pytest.raises(InputError, match="no group 1 match"):
        scan_dataset("mitea", tmp_path, patient_pattern=r"^(case_\d+)_")


def test_mitea_side_by_side_and_shape_mismatch(tmp_path):
    write_pair(tmp_path, tmp_path, "MITEA_001_scan2_ES", sphere_labels(1, 2))
    write_image(Volume(np.zeros((N3, N3, N3 - 1), np.uint8), SPACING_3D, ORIGIN_3D), tmp_path / "bad.nii.gz")
    write_image(
        Volume(np.zeros((N3, N3, N3), np.float32), SPACING_3D, ORIGIN_3D), tmp_path / "bad_0000.nii.gz"
    )
    refs = {ref.case_id: ref for ref in scan_dataset("mitea", tmp_path).cases}
    assert refs["MITEA_001_scan2_ES"].patient_id == "MITEA_001" and refs["MITEA_001_scan2_ES"].split is None
    refs["MITEA_001_scan2_ES"].load()
    with pytest.raises(InputError, match="differ in shape"):
        refs["bad"].load()
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "imagesTs").mkdir()
    with pytest.raises(InputError, match="labelsTs"):
        scan_dataset("mitea", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Generic folder
# ---------------------------------------------------------------------------------------------------------


def test_folder_images_and_labels_subfolders(tmp_path):
    labels = sphere_labels(myo=2, cavity=1)
    image = Volume(np.random.default_rng(0).random((N3, N3, N3)).astype(np.float32), SPACING_3D, ORIGIN_3D)
    write_image(image, tmp_path / "images/a.nii.gz")
    write_label_map(image.with_array(labels), tmp_path / "labels/a.nrrd")
    write_image(image, tmp_path / "images/b.nii.gz")  # no label
    write_image(image, tmp_path / "images/c.mhd")  # MetaImage pair: header + data file
    write_label_map(image.with_array(labels), tmp_path / "labels/c.mhd")
    scan, cases = scan_untouched("folder", tmp_path)
    assert list(cases) == ["a", "c"]
    c_sources = {
        str(p.relative_to(tmp_path)) for p in next(r for r in scan.cases if r.case_id == "c").sources
    }
    assert c_sources == {"images/c.mhd", "images/c.zraw", "labels/c.mhd", "labels/c.zraw"}
    np.testing.assert_array_equal(cases["c"].labels.array, labels)
    assert [Path(s.source).name for s in scan.skipped] == ["b.nii.gz"]
    np.testing.assert_array_equal(cases["a"].labels.array, labels)
    np.testing.assert_array_equal(cases["a"].image.array, image.array)
    assert cases["a"].image.spacing == SPACING_3D
    assert cases["a"].metadata["labels"] == "a.nrrd"


def test_folder_side_by_side_label_and_seg_nrrd(tmp_path):
    labels2d = camus_labels()
    image2d = Volume.from_2d(fan_image(labels2d), NII_SPACING)
    write_image(image2d, tmp_path / "x.nii.gz")
    write_label_map(image2d.with_array(labels2d[np.newaxis]), tmp_path / "x_label.nii.gz")
    # Slicer's pattern, with segment values that differ from the canonical ones: mapped by name.
    volume = Volume(np.random.default_rng(1).integers(0, 255, (N3, N3, N3)).astype(np.uint8), SPACING_3D)
    seg = sphere_labels(myo=5, cavity=7)
    write_image(volume, tmp_path / "y.nrrd")
    write_segmentation(
        volume.with_array(seg), [Segment(7, "LV cavity"), Segment(5, "Myocardium")], tmp_path / "y.seg.nrrd"
    )
    write_image(volume, tmp_path / "lonely.nrrd")
    scan, cases = scan_untouched("folder", tmp_path)
    assert sorted(cases) == ["x", "y"]
    assert [Path(s.source).name for s in scan.skipped] == ["lonely.nrrd"]
    assert "no label" in scan.skipped[0].reason
    np.testing.assert_array_equal(cases["x"].labels.array[0], labels2d)
    assert cases["x"].image.spacing[:2] == NII_SPACING
    np.testing.assert_array_equal(cases["y"].labels.array, sphere_labels(myo=2, cavity=1))
    assert cases["y"].metadata["labels"] == "y.seg.nrrd"
    refs = {ref.case_id: ref for ref in scan.cases}
    assert {p.name for p in refs["y"].sources} == {"y.nrrd", "y.seg.nrrd"}


def test_folder_cropped_seg_nrrd_is_embedded_exactly(tmp_path):
    # A rotated grid, so the crop offset must go through the direction matrix.
    direction = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image = Volume(np.zeros((N3, N3, N3), np.int16), SPACING_3D, ORIGIN_3D, direction)
    write_image(image, tmp_path / "z.nrrd")
    start_ijk = np.array([3, 4, 5])
    crop = np.zeros((4, 5, 6), np.uint8)  # (k, j, i) sizes
    crop[1:3, 1:4, 1:5] = 1
    crop[0, 0, 0] = 2
    crop[-1, -1, -1] = 3
    origin = np.array(ORIGIN_3D) + image.direction_matrix @ (np.array(SPACING_3D) * start_ijk)
    cropped = Volume(crop, SPACING_3D, tuple(origin), direction)
    segments = [Segment(1, "LV cavity"), Segment(2, "Myocardium"), Segment(3, "LA")]
    write_segmentation(cropped, segments, tmp_path / "z.seg.nrrd")
    _, cases = scan_untouched("folder", tmp_path)
    labels = cases["z"].labels
    assert labels.same_geometry(image)
    expected = np.zeros((N3, N3, N3), np.uint8)
    i, j, k = start_ijk
    expected[k : k + 4, j : j + 5, i : i + 6] = crop
    np.testing.assert_array_equal(labels.array, expected)
    assert labels.array[k, j, i] == 2 and labels.array[k + 3, j + 4, i + 5] == 3
    # Off by half a voxel: refused, not resampled.
    shifted = Volume(crop, SPACING_3D, tuple(origin + 0.5 * np.array(SPACING_3D)), direction)
    write_segmentation(shifted, segments, tmp_path / "z.seg.nrrd")
    with pytest.raises(InputError, match="fraction of a voxel"):
        scan_dataset("folder", tmp_path).cases[0].load()
    # Reaching outside the image: refused.
    outside = Volume(
        crop, SPACING_3D, tuple(np.array(ORIGIN_3D) - image.direction_matrix @ SPACING_3D), direction
    )
    write_segmentation(outside, segments, tmp_path / "z.seg.nrrd")
    with pytest.raises(InputError, match="outside the image"):
        scan_dataset("folder", tmp_path).cases[0].load()


def test_folder_label_with_other_spacing_raises_on_load(tmp_path):
    image = Volume(np.zeros((N3, N3, N3), np.uint8), SPACING_3D, ORIGIN_3D)
    write_image(image, tmp_path / "p.nii.gz")
    write_label_map(Volume(sphere_labels(2, 1), (1.0, 1.0, 1.0), ORIGIN_3D), tmp_path / "p_seg.nii.gz")
    scan = scan_dataset("folder", tmp_path)
    assert [ref.case_id for ref in scan.cases] == ["p"]
    with pytest.raises(InputError, match="does not match the image grid"):
        scan.cases[0].load()


def test_folder_images_without_labels_folder(tmp_path):
    write_image(Volume(np.zeros((N3, N3, N3), np.uint8)), tmp_path / "images/a.nii.gz")
    with pytest.raises(InputError, match="no labels/ folder"):
        scan_dataset("folder", tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(InputError, match=r"no folder cases found.*no label file"):
        scan_dataset("folder", tmp_path)


# ---------------------------------------------------------------------------------------------------------
# Every reader
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["camus", "camus224", "mitea", "folder"])
def test_wrong_roots_give_clear_errors(tmp_path, dataset):
    with pytest.raises(InputError, match="no such folder"):
        scan_dataset(dataset, tmp_path / "missing")
    (tmp_path / "a_file.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="not a folder"):
        scan_dataset(dataset, tmp_path / "a_file.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"cases found \(expected"):
        scan_dataset(dataset, tmp_path / "empty")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(InputError, match=r"unknown dataset 'kaggle'.*camus"):
        scan_dataset("kaggle", tmp_path)


def test_readers_do_not_write_even_when_loading_fails(tmp_path):
    make_camus(tmp_path / "camus", half_sequence=True)
    bad = camus_labels()
    bad[3, 3] = 7
    write_image(Volume.from_2d(bad, MHD_SPACING), tmp_path / "camus/patient0001/patient0001_2CH_ED_gt.mhd")
    before = snapshot(tmp_path)
    os.chmod(tmp_path / "camus/patient0001", 0o555)  # a write attempt would fail loudly
    try:
        for ref in scan_dataset("camus", tmp_path / "camus", half_sequences=True).cases:
            try:
                ref.load()
            except InputError:
                assert ref.case_id == "patient0001_2CH_ED"
    finally:
        os.chmod(tmp_path / "camus/patient0001", 0o755)
    assert snapshot(tmp_path) == before
