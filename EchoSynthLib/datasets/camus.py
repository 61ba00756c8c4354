"""CAMUS in its original layouts: ``.mhd/.raw`` (2019 release) and ``.nii.gz`` (``database_nifti``).

Layout: ``ROOT/.../patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}{ext}`` with ``..._gt{ext}`` label maps
(0 background, 1 LV endocardium, 2 myocardium, 3 left atrium), ``Info_2CH.cfg`` / ``Info_4CH.cfg``
(ED/ES frames, image quality, sex, age, EF) and, optionally, ``..._half_sequence{ext}`` with
``..._half_sequence_gt{ext}`` (frames along the third axis). Spacing is anisotropic and kept as read.
If a ``database_split/subgroup_{training,validation,testing}.txt`` is found next to the patients, its
patient lists define the splits.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from EchoSynthLib.data.cases import Case, CaseRef, Scan, Skipped, require_cases, require_directory, unique_ids
from EchoSynthLib.data.io import read_image, with_data_files
from EchoSynthLib.data.labels import CAMUS
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

VIEWS = ("2CH", "4CH")
PHASES = ("ED", "ES")
EXTENSIONS = (".nii.gz", ".nii", ".mhd")  # preferred first when a folder holds both releases
LAYOUT = "patientNNNN/patientNNNN_{2CH,4CH}_{ED,ES}[_gt].{mhd,nii.gz}"
_PATIENT_DIR = re.compile(r"^patient\d+$", re.IGNORECASE)
_SPLIT_FILES = {
    "train": "subgroup_training.txt",
    "val": "subgroup_validation.txt",
    "test": "subgroup_testing.txt",
}
# Info_*.cfg keys -> metadata names and types. Releases differ ("LVef" vs "EF"); both are accepted.
_INFO_FIELDS: dict[str, tuple[str, type]] = {
    "ED": ("ed_frame", int),
    "ES": ("es_frame", int),
    "NbFrame": ("n_frames", int),
    "Sex": ("sex", str),
    "Age": ("age", int),
    "ImageQuality": ("image_quality", str),
    "LVedv": ("edv", float),
    "LVesv": ("esv", float),
    "LVef": ("ef", float),
    "EF": ("ef", float),
    "FrameRate": ("fps", float),
}


def read_info(path: Path) -> dict[str, Any]:
    """Parse an ``Info_*.cfg`` file ("Key: value" lines) into typed metadata; unknown keys kept as text."""
    info: dict[str, Any] = {}
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise InputError(f"{path}: line {number} is not 'Key: value': {line.strip()!r}")
        name, kind = _INFO_FIELDS.get(key.strip(), (key.strip().lower(), str))
        try:
            info[name] = kind(float(value)) if kind is int else kind(value.strip())
        except ValueError:
            raise InputError(
                f"{path}: line {number}: {key.strip()} is not a number: {value.strip()!r}"
            ) from None
    return info


def _find(folder: Path, name: str) -> Path | None:
    return next((folder / f"{name}{ext}" for ext in EXTENSIONS if (folder / f"{name}{ext}").is_file()), None)


def _split_lists(root: Path) -> dict[str, str]:
    """patient -> split from the official ``database_split`` lists, if present near the root."""
    for folder in (root / "database_split", root.parent / "database_split"):
        if folder.is_dir():
            splits = {}
            for split, file_name in _SPLIT_FILES.items():
                if (folder / file_name).is_file():
                    for line in (folder / file_name).read_text().split():
                        splits[line.strip()] = split
            return splits
    return {}


@functools.lru_cache(maxsize=4)
def _read_cached(path: Path, mtime_ns: int) -> Volume:
    """Half-sequence files are read once for all their frames."""
    return read_image(path)


def _load_pair(
    case_id: str,
    patient: str,
    image_path: Path,
    label_path: Path,
    metadata: dict[str, Any],
    frame: int | None,
) -> Case:
    image = _read_cached(image_path, image_path.stat().st_mtime_ns)
    labels = _read_cached(label_path, label_path.stat().st_mtime_ns)
    if frame is not None:
        if frame >= image.array.shape[0] or frame >= labels.array.shape[0]:
            raise InputError(f"{image_path}: has no frame {frame}")
        image = Volume(image.array[frame : frame + 1], image.spacing, image.origin, image.direction)
        labels = Volume(labels.array[frame : frame + 1], labels.spacing, labels.origin, labels.direction)
    if image.array.shape != labels.array.shape:
        raise InputError(
            f"{case_id}: image {image_path.name} is {image.array.shape} but labels {label_path.name} "
            f"are {labels.array.shape}"
        )
    try:
        canonical = CAMUS.to_canonical(labels.array)
    except InputError as error:
        raise InputError(f"{label_path}: {error}") from None
    return Case(case_id, patient, image, labels.with_array(canonical), metadata)


def _ref(case_id: str, patient: str, image: Path, label: Path, info: Path | None, split: str | None, **meta):
    metadata: dict[str, Any] = {"dataset": "camus", "patient": patient, **meta}
    # .mhd headers name their data file (.raw, or .zraw when compressed): it is a source too.
    sources = with_data_files(image, label) + ((info,) if info else ())

    def load() -> Case:
        full = dict(metadata)
        if info is not None:
            full.update(read_info(info))
        return _load_pair(case_id, patient, image, label, full, meta.get("frame"))

    return CaseRef(case_id, patient, sources, load, split)


def _patient_refs(
    folder: Path, split: str | None, half_sequences: bool
) -> tuple[list[CaseRef], list[Skipped]]:
    patient = folder.name
    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    for view in VIEWS:
        info = folder / f"Info_{view}.cfg"
        info_path = info if info.is_file() else None
        for phase in PHASES:
            name = f"{patient}_{view}_{phase}"
            image, label = _find(folder, name), _find(folder, f"{name}_gt")
            if image is None and label is None:
                continue
            if image is None or label is None:
                missing = f"{name}_gt" if label is None else name
                skipped.append(
                    Skipped(str(folder / name), f"no {missing}{{{','.join(EXTENSIONS)}}} beside it")
                )
                continue
            refs.append(_ref(name, patient, image, label, info_path, split, view=view, phase=phase))
        if half_sequences:
            refs += _half_sequence_refs(folder, patient, view, info_path, split, skipped)
    return refs, skipped


def _half_sequence_refs(
    folder: Path, patient: str, view: str, info: Path | None, split: str | None, skipped: list[Skipped]
) -> list[CaseRef]:
    name = f"{patient}_{view}_half_sequence"
    image, label = _find(folder, name), _find(folder, f"{name}_gt")
    if image is None:
        return []
    if label is None:
        skipped.append(Skipped(str(image), "half-sequence without its _gt label file"))
        return []
    try:
        frames = _frame_count(image)
    except InputError as error:
        skipped.append(Skipped(str(image), str(error)))
        return []
    return [
        _ref(f"{patient}_{view}_hs{frame:02d}", patient, image, label, info, split, view=view, frame=frame)
        for frame in range(frames)
    ]


def _frame_count(path: Path) -> int:
    """Frames of a half-sequence (its third axis) from the file header alone: scans stay cheap."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        lines = str(error).strip().splitlines()
        raise InputError(f"{path}: cannot be read as an image ({lines[-1] if lines else error})") from None
    size = reader.GetSize()
    return int(size[2]) if len(size) > 2 else 1


def scan(root: str | Path, *, half_sequences: bool = False) -> Scan:
    """Find every CAMUS case under ``root`` (any depth), ED/ES pairs plus optional half-sequence frames."""
    root = require_directory(root, "CAMUS")
    splits = _split_lists(root)
    folders = sorted(p for p in root.rglob("patient*") if p.is_dir() and _PATIENT_DIR.match(p.name))
    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    for folder in folders:
        patient_refs, patient_skipped = _patient_refs(folder, splits.get(folder.name), half_sequences)
        refs += patient_refs
        skipped += patient_skipped
    return require_cases(Scan("CAMUS", root, unique_ids(refs), skipped), LAYOUT)
