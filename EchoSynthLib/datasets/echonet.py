"""EchoNet-Dynamic reader: the two traced frames (ED and ES) of each apical-4-chamber video.

Layout: ``ROOT/Videos/*.avi`` (112x112 MJPG), ``ROOT/FileList.csv`` (FileName, EF, ESV, EDV, FPS, Split, ...)
and ``ROOT/VolumeTracings.csv`` (FileName, X1, Y1, X2, Y2, Frame). Per traced frame the first tracing row
is the long axis and the rest are perpendicular chords; the LV outline runs down the (X1, Y1) ends and back
up the (X2, Y2) ends. Of a video's traced frames the largest outline is ED and the smallest ES.
Coordinates are pixels (x = column, y = row) with pixel centres at integer values.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from EchoSynthLib.data.cases import (
    SPLITS,
    Case,
    CaseRef,
    Scan,
    Skipped,
    require_cases,
    require_directory,
    unique_ids,
)
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

DATASET = "EchoNet-Dynamic"
LAYOUT = "Videos/*.avi with FileList.csv and VolumeTracings.csv"
FILELIST_COLUMNS = ("FileName", "EF", "ESV", "EDV", "FPS")
TRACING_COLUMNS = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")


@dataclass(frozen=True)
class _Video:
    """One FileList row."""

    name: str  # file name with .avi
    path: Path
    ef: float
    esv: float
    edv: float
    fps: float
    split: str | None


def _stem(file_name: str) -> str:
    """The video name without a trailing .avi (either CSV may or may not carry it)."""
    name = file_name.strip()
    return name[:-4] if name.lower().endswith(".avi") else name


def _read_csv(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs of a CSV, after checking its header has ``columns``."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [c for c in columns if c not in header]
        if missing:
            raise InputError(
                f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'no header'}; "
                f"expected {', '.join(columns)})"
            )
        reader.fieldnames = header
        for row in reader:
            yield reader.line_num, row


def _polygon(chords: list[tuple[float, float, float, float]]) -> np.ndarray:
    """(n, 2) x/y outline: (X1, Y1) of the chords after the long axis, then their (X2, Y2) reversed."""
    rows = np.asarray(chords[1:], dtype=float)
    return np.concatenate([rows[:, 0:2], rows[::-1, 2:4]])


def _opencv():
    """OpenCV, with FFmpeg's own log lines (e.g. "[mjpeg @ 0x...] overread" on a damaged AVI) silenced:
    a damaged video is reported as one line naming the file, not FFmpeg's. OpenCV reads
    OPENCV_FFMPEG_LOGLEVEL when its FFmpeg backend starts (-8: quiet); a value the user set is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    import cv2

    return cv2


def _area(polygon: np.ndarray) -> float:
    """Shoelace area of a closed x/y outline."""
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _read_frame(path: Path, frame: int) -> np.ndarray:
    """Frame ``frame`` of a video as a uint8 (rows, cols) grey image, decoding only up to it."""
    cv2 = _opencv()

    if frame < 0:
        raise InputError(f"{path}: frame {frame} is negative (frame indices start at 0)")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot open the video to read frame {frame} (expected an MJPG AVI)")
        for index in range(frame):
            if not capture.grab():
                raise InputError(f"{path}: frame {frame} is beyond the end of the video ({index} frames)")
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok or image is None:
        raise InputError(f"{path}: cannot read frame {frame} (the video ends or is damaged at that frame)")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # BT.601 luminance
    return np.ascontiguousarray(image, dtype=np.uint8)


def frame_count(path: str | Path) -> int:
    """The number of frames of a video, read from its header (no decoding)."""
    cv2 = _opencv()

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot open the video (expected an MJPG AVI)")
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of a video as uint8 (frames, rows, cols) grey images."""
    cv2 = _opencv()

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        if not capture.isOpened():
            raise InputError(f"{path}: cannot open the video (expected an MJPG AVI)")
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                break
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image)
    finally:
        capture.release()
    if not frames:
        raise InputError(f"{path}: the video has no readable frame")
    return np.ascontiguousarray(np.stack(frames), dtype=np.uint8)


def _load(video: _Video, frame: int, phase: str, polygon: np.ndarray) -> Case:
    """The traced frame as a Case with the LV cavity rasterised at pixel centres."""
    from matplotlib.path import Path as PolygonPath

    image = _read_frame(video.path, frame)
    rows, cols = image.shape
    jj, ii = np.mgrid[0:rows, 0:cols]
    centres = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    inside = PolygonPath(polygon).contains_points(centres).reshape(rows, cols)
    if not inside.any():
        raise InputError(f"{video.path}: the {phase} tracing of frame {frame} covers no pixel of the image")
    labels = np.where(inside, Structure.LV_CAVITY.label, Structure.BACKGROUND.label).astype(np.uint8)
    metadata = {
        "dataset": "echonet",
        "video": video.name,
        "frame": frame,
        "phase": phase,
        "ef": video.ef,
        "esv": video.esv,
        "edv": video.edv,
        "fps": video.fps,
        "split": video.split,
    }
    stem = _stem(video.name)
    return Case(f"{stem}_{phase}", stem, Volume.from_2d(image), Volume.from_2d(labels), metadata)


def _read_tracings(path: Path) -> dict[str, dict[int, list[tuple[float, float, float, float]]]]:
    """Tracing rows grouped by video stem and frame, in file order."""
    tracings: dict[str, dict[int, list[tuple[float, float, float, float]]]] = {}
    for line, row in _read_csv(path, TRACING_COLUMNS):
        try:
            frame = int(float(row["Frame"]))
            x1, y1, x2, y2 = (float(row[c]) for c in ("X1", "Y1", "X2", "Y2"))
        except (TypeError, ValueError):
            values = ", ".join(f"{c}={row.get(c)!r}" for c in TRACING_COLUMNS[1:])
            raise InputError(f"{path}, line {line}: expected numbers, got {values}") from None
        tracings.setdefault(_stem(row["FileName"]), {}).setdefault(frame, []).append((x1, y1, x2, y2))
    return tracings


def scan(root: str | Path, *, splits: str = "dataset") -> Scan:
    """List the ED and ES frame of every traced EchoNet-Dynamic video.

    ``splits="dataset"`` keeps FileList's Split (train/val/test) on each case; ``"random"`` leaves it None.
    """
    if splits not in ("dataset", "random"):
        raise InputError(f"splits must be 'dataset' or 'random', got {splits!r}")
    root = require_directory(root, DATASET)
    filelist, tracings_csv, videos_dir = root / "FileList.csv", root / "VolumeTracings.csv", root / "Videos"
    for required, present in (
        (filelist, filelist.is_file()),
        (tracings_csv, tracings_csv.is_file()),
        (videos_dir, videos_dir.is_dir()),
    ):
        if not present:
            raise InputError(f"{root}: {required.name} not found (expected the {DATASET} layout: {LAYOUT})")
    on_disk = {p.stem: p for p in videos_dir.iterdir() if p.suffix.lower() == ".avi"}
    tracings = _read_tracings(tracings_csv)

    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    listed: set[str] = set()
    columns = (*FILELIST_COLUMNS, "Split") if splits == "dataset" else FILELIST_COLUMNS
    for line, row in _read_csv(filelist, columns):
        stem = _stem(row["FileName"])
        listed.add(stem)
        path = on_disk.get(stem, videos_dir / f"{stem}.avi")
        source = str(path)
        if stem not in on_disk:
            skipped.append(Skipped(source, "video file missing (listed in FileList.csv)"))
            continue
        split = None
        if splits == "dataset":
            split = row["Split"].strip().lower()
            if split not in SPLITS:
                skipped.append(Skipped(source, f"unknown Split {row['Split']!r} in FileList.csv line {line}"))
                continue
        try:
            ef, esv, edv, fps = (float(row[c]) for c in ("EF", "ESV", "EDV", "FPS"))
        except (TypeError, ValueError):
            values = ", ".join(f"{c}={row.get(c)!r}" for c in ("EF", "ESV", "EDV", "FPS"))
            skipped.append(Skipped(source, f"FileList.csv line {line}: expected numbers, got {values}"))
            continue
        frames = tracings.get(stem, {})
        if len(frames) < 2:
            skipped.append(
                Skipped(source, f"{len(frames)} traced frame(s) in VolumeTracings.csv (need ED and ES)")
            )
            continue
        short = sorted(f for f, chords in frames.items() if len(chords) < 3)
        if short:
            skipped.append(
                Skipped(source, f"traced frame(s) {short} have fewer than 2 chords after the long axis")
            )
            continue
        video = _Video(path.name, path, ef, esv, edv, fps, split)
        polygons = {f: _polygon(chords) for f, chords in frames.items()}
        by_area = sorted(polygons, key=lambda f: _area(polygons[f]))
        for phase, frame in (("ED", by_area[-1]), ("ES", by_area[0])):
            load = partial(_load, video, frame, phase, polygons[frame])
            refs.append(CaseRef(f"{stem}_{phase}", stem, (path,), load, split))
    for stem in sorted(set(tracings) - listed):
        skipped.append(
            Skipped(str(videos_dir / f"{stem}.avi"), "traced in VolumeTracings.csv but not in FileList.csv")
        )

    result = Scan(DATASET, root, unique_ids(refs), skipped, extra_sources=(filelist, tracings_csv))
    return require_cases(result, LAYOUT)
