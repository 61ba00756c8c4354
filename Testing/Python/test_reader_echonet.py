"""EchoNet-Dynamic reader: scan of FileList/VolumeTracings, ED/ES choice, frame reading and LV masks."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from EchoSynthLib.datasets.echonet import scan
from EchoSynthLib.errors import InputError

FILELIST_HEADER = [
    "FileName",
    "EF",
    "ESV",
    "EDV",
    "FrameHeight",
    "FrameWidth",
    "FPS",
    "NumberOfFrames",
    "Split",
]
TRACINGS_HEADER = ["FileName", "X1", "Y1", "X2", "Y2", "Frame"]
N_FRAMES = 10


def disc_radius(frame: int) -> int:
    return 8 + 3 * frame


def write_video(path: Path, n_frames: int = N_FRAMES) -> None:
    """A grey MJPG AVI: a bright disc whose radius grows with the frame index."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50, (112, 112))
    assert writer.isOpened()
    for frame in range(n_frames):
        image = np.full((112, 112, 3), 20, np.uint8)
        cv2.circle(image, (56, 56), disc_radius(frame), (230, 230, 230), -1)
        writer.write(image)
    writer.release()


def rectangle(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float, float, float]]:
    """Tracing rows of a rectangle: the long axis, then 20 horizontal chords."""
    middle = (x0 + x1) / 2
    return [(middle, y0, middle, y1)] + [(x0, y, x1, y) for y in np.linspace(y0, y1, 20)]


def diamond(radius: float, centre: float = 56.0) -> list[tuple[float, float, float, float]]:
    """Tracing rows of a diamond |x - c| + |y - c| <= radius."""
    rows = [(centre, centre - radius, centre, centre + radius)]
    for y in np.linspace(centre - radius, centre + radius, 21):
        half = radius - abs(y - centre)
        rows.append((centre - half, y, centre + half, y))
    return rows


def filelist_row(name: str, split: str = "TRAIN", ef: float = 60.0) -> list[object]:
    return [name, ef, 40.0, 100.0, 112, 112, 50, N_FRAMES, split]


def write_dataset(
    root: Path,
    videos: list[str],
    filelist: list[list[object]],
    tracings: list[tuple[str, int, list[tuple[float, float, float, float]]]],
) -> Path:
    """ROOT/Videos/<name>.avi, FileList.csv and VolumeTracings.csv in the real column layouts."""
    (root / "Videos").mkdir(parents=True)
    for name in videos:
        write_video(root / "Videos" / f"{name}.avi")
    with (root / "FileList.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FILELIST_HEADER)
        writer.writerows(filelist)
    with (root / "VolumeTracings.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TRACINGS_HEADER)
        for name, frame, rows in tracings:
            writer.writerows([name, *row, frame] for row in rows)
    return root


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    small, big = rectangle(40.5, 60.5, 30.5, 70.5), rectangle(30.5, 70.5, 20.5, 80.5)
    return write_dataset(
        tmp_path / "echonet",
        videos=["VidA", "VidB", "VidC", "VidE", "VidF"],
        filelist=[
            filelist_row("VidA", "TRAIN", ef=55.5),  # no .avi here, .avi in the tracings
            filelist_row("VidB.avi", "VAL"),  # .avi here, none in the tracings
            filelist_row("VidC", "TEST"),  # one traced frame
            filelist_row("VidD", "TRAIN"),  # traced, but no video file
            filelist_row("VidF", "EXTERNAL"),  # unknown split
        ],
        tracings=[
            ("VidA.avi", 2, small),  # ES listed first
            ("VidA.avi", 7, big),
            ("VidB", 1, diamond(30)),  # ED listed first
            ("VidB", 5, diamond(15)),
            ("VidC", 4, big),
            ("VidD", 1, big),
            ("VidD", 3, small),
            ("VidE.avi", 1, big),  # not in FileList
            ("VidE.avi", 3, small),
            ("VidF", 1, big),
            ("VidF", 3, small),
        ],
    )


def test_scan_lists_ed_and_es_per_traced_video(dataset: Path):
    result = scan(dataset)
    assert result.dataset == "EchoNet-Dynamic"
    assert [r.case_id for r in result.cases] == ["VidA_ED", "VidA_ES", "VidB_ED", "VidB_ES"]
    assert {r.patient_id for r in result.cases} == {"VidA", "VidB"}
    assert [r.split for r in result.cases] == ["train", "train", "val", "val"]
    assert result.cases[0].sources == (dataset / "Videos" / "VidA.avi",)
    assert set(result.extra_sources) == {dataset / "FileList.csv", dataset / "VolumeTracings.csv"}
    assert dataset / "Videos" / "VidB.avi" in result.source_files()


def test_scan_skips_unusable_videos_with_reasons(dataset: Path):
    reasons = {Path(s.source).stem: s.reason for s in scan(dataset).skipped}
    assert set(reasons) == {"VidC", "VidD", "VidE", "VidF"}
    assert "1 traced frame" in reasons["VidC"]
    assert "missing" in reasons["VidD"]
    assert "not in FileList.csv" in reasons["VidE"]
    assert "EXTERNAL" in reasons["VidF"]


def test_random_splits_leave_split_unset(dataset: Path):
    result = scan(dataset, splits="random")
    assert all(r.split is None for r in result.cases)
    assert "VidF" in {r.patient_id for r in result.cases}  # the dataset's split no longer matters
    assert result.cases[0].load().metadata["split"] is None
    with pytest.raises(InputError, match="splits must be"):
        scan(dataset, splits="patient")


def test_ed_is_the_larger_tracing_and_the_frame_is_read(dataset: Path):
    refs = {r.case_id: r for r in scan(dataset).cases}
    for case_id, frame, phase in (("VidA_ED", 7, "ED"), ("VidA_ES", 2, "ES"), ("VidB_ED", 1, "ED")):
        case = refs[case_id].load()
        assert case.metadata["frame"] == frame and case.metadata["phase"] == phase
        assert case.image.array.dtype == np.uint8 and case.image.array.shape == (1, 112, 112)
        assert case.image.spacing == (1.0, 1.0, 1.0)
        assert case.labels.array.dtype == np.uint8 and set(np.unique(case.labels.array)) <= {0, 1}
        bright = int((case.image.array > 128).sum())
        assert bright == pytest.approx(np.pi * disc_radius(frame) ** 2, rel=0.05)  # the right frame
    metadata = refs["VidA_ED"].load().metadata
    assert metadata == {
        "dataset": "echonet",
        "video": "VidA.avi",
        "frame": 7,
        "phase": "ED",
        "ef": 55.5,
        "esv": 40.0,
        "edv": 100.0,
        "fps": 50.0,
        "split": "train",
    }


def test_mask_lies_inside_the_traced_polygon(dataset: Path):
    refs = {r.case_id: r for r in scan(dataset).cases}
    square = refs["VidA_ED"].load().labels.array[0]  # x 30.5..70.5, y 20.5..80.5
    expected = np.zeros((112, 112), np.uint8)
    expected[21:81, 31:71] = 1  # rows are y, columns x, pixel centres at integers
    np.testing.assert_array_equal(square, expected)
    assert square.sum() == 40 * 60

    mask = refs["VidB_ED"].load().labels.array[0]  # diamond of radius 30 around (56, 56)
    assert mask[56, 56] == 1 and mask[56, 84] == 1 and mask[30, 56] == 1
    assert mask[56, 88] == 0 and mask[28, 28] == 0 and mask[84, 84] == 0
    assert mask.sum() == pytest.approx(2 * 30**2, rel=0.05)


def test_frame_beyond_the_video_and_unreadable_video_fail_on_load(tmp_path: Path):
    root = write_dataset(
        tmp_path / "echonet",
        videos=["Short"],
        filelist=[filelist_row("Short"), filelist_row("Broken")],
        tracings=[
            ("Short", 40, rectangle(30.5, 70.5, 20.5, 80.5)),
            ("Short", 3, rectangle(40.5, 60.5, 30.5, 70.5)),
            ("Broken", 1, rectangle(30.5, 70.5, 20.5, 80.5)),
            ("Broken", 3, rectangle(40.5, 60.5, 30.5, 70.5)),
        ],
    )
    (root / "Videos" / "Broken.avi").write_bytes(b"not a video")
    refs = {r.case_id: r for r in scan(root).cases}
    assert refs["Short_ES"].load().metadata["frame"] == 3
    with pytest.raises(InputError, match=r"Short\.avi.*frame 40"):
        refs["Short_ED"].load()
    with pytest.raises(InputError, match=r"Broken\.avi.*frame 1"):
        refs["Broken_ED"].load()


def test_missing_root_files_and_columns_are_input_errors(tmp_path: Path):
    with pytest.raises(InputError, match=r"no such folder.*EchoNet-Dynamic"):
        scan(tmp_path / "absent")
    root = write_dataset(
        tmp_path / "echonet",
        videos=["VidA"],
        filelist=[filelist_row("VidA")],
        tracings=[("VidA", 1, rectangle(30.5, 70.5, 20.5, 80.5)), ("VidA", 3, rectangle(40, 60, 30, 70))],
    )
    assert len(scan(root).cases) == 2

    (root / "VolumeTracings.csv").rename(root / "tracings.bak")
    with pytest.raises(InputError, match=r"VolumeTracings\.csv not found.*Videos/\*\.avi"):
        scan(root)
    (root / "tracings.bak").rename(root / "VolumeTracings.csv")

    filelist = (root / "FileList.csv").read_text()
    (root / "FileList.csv").write_text(filelist.replace(",Split", ",Fold"))
    with pytest.raises(InputError, match=r"FileList\.csv: missing column\(s\) Split"):
        scan(root)
    assert len(scan(root, splits="random").cases) == 2  # Split is only needed for the dataset's splits

    (root / "FileList.csv").unlink()
    with pytest.raises(InputError, match=r"FileList\.csv not found.*expected the EchoNet-Dynamic layout"):
        scan(root)


def test_no_usable_video_is_an_input_error(tmp_path: Path):
    root = write_dataset(
        tmp_path / "echonet",
        videos=["VidA"],
        filelist=[filelist_row("VidA")],
        tracings=[("VidA", 1, rectangle(30.5, 70.5, 20.5, 80.5))],
    )
    with pytest.raises(InputError, match=r"no EchoNet-Dynamic cases found.*1 traced frame"):
        scan(root)
