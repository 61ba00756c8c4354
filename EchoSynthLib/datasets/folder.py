"""A generic folder of image / label-map pairs in any format the IO layer reads, ``.seg.nrrd`` included.

Two layouts are recognised:
- ``ROOT/images/NAME.ext`` with ``ROOT/labels/NAME.ext`` (any two formats; matched by name);
- one folder where a label file is named after its image plus ``_label``, ``_labels``, ``_seg``,
  ``_mask`` or ``_gt`` (``case1.nii.gz`` + ``case1_label.nii.gz``), or is ``NAME.seg.nrrd`` beside
  ``NAME.nrrd`` (Slicer's save pattern); an image may carry ``_image`` or ``_img`` (``case1_image.nrrd``
  + ``case1_labels.seg.nrrd``, as ``echosynth demo`` writes them).
Segments of ``.seg.nrrd`` files are mapped to structures by name; label images by ``schema``. Slicer
often saves a segmentation cropped to its content: such a label grid is placed back onto the image grid
when it lies exactly on it (same spacing and direction, whole-voxel offset).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from EchoSynthLib.data.cases import Case, CaseRef, Scan, Skipped, require_cases, require_directory, unique_ids
from EchoSynthLib.data.io import (
    file_kind,
    read_image,
    read_label_map,
    readable_files,
    stem_of,
    with_data_files,
)
from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.datasets.naming import patient_id_for
from EchoSynthLib.errors import InputError

LABEL_TAGS = ("_labels", "_label", "_seg", "_mask", "_gt")
IMAGE_TAGS = ("_image", "_img")
LAYOUT = "images/NAME.ext + labels/NAME.ext, or NAME.ext + NAME_label.ext (or NAME.seg.nrrd) in one folder"


def embed_on_grid(labels: Volume, image: Volume, tolerance: float = 1e-3) -> Volume:
    """The label map on the image's grid: unchanged if the grids match, padded if it is a whole-voxel crop.

    Anything else (other spacing or direction, a fractional offset, labels reaching outside the image) is
    an InputError: resampling labels silently would hide a mismatched pair.
    """
    if labels.same_geometry(image, tolerance):
        return labels
    if labels.is_2d and image.is_2d and labels.array.shape == image.array.shape:
        same_plane = np.allclose(labels.spacing[:2], image.spacing[:2], atol=tolerance)
        if same_plane and np.allclose(labels.origin[:2], image.origin[:2], atol=tolerance):
            return image.with_array(labels.array)  # 2D files hold no slice position/thickness worth comparing
    if not (
        np.allclose(labels.spacing, image.spacing, atol=tolerance)
        and np.allclose(labels.direction, image.direction, atol=tolerance)
    ):
        raise InputError(
            f"label grid ({labels.describe_geometry()}) does not match the image grid "
            f"({image.describe_geometry()})"
        )
    offset_ijk = np.linalg.solve(image.ijk_to_lps(), np.append(labels.origin, 1.0))[:3]
    rounded = np.rint(offset_ijk).astype(int)
    if np.any(np.abs(offset_ijk - rounded) > tolerance):
        raise InputError(f"label grid is offset from the image grid by a fraction of a voxel ({offset_ijk})")
    start = rounded[::-1]  # (k, j, i)
    stop = start + np.array(labels.array.shape)
    if np.any(start < 0) or np.any(stop > np.array(image.array.shape)):
        raise InputError(
            f"label map extends outside the image (voxels {start.tolist()}..{stop.tolist()} of "
            f"{list(image.array.shape)})"
        )
    full = np.zeros(image.array.shape, dtype=labels.array.dtype)
    full[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))] = labels.array
    return image.with_array(full)


def _load(case: str, patient: str, image_path: Path, label_path: Path, schema: LabelSchema) -> Case:
    image = read_image(image_path)
    labels = read_label_map(label_path, schema)
    try:
        labels = embed_on_grid(labels, image)
    except InputError as error:
        raise InputError(f"{label_path.name} vs {image_path.name}: {error}") from None
    metadata = {"dataset": "folder", "image": image_path.name, "labels": label_path.name}
    return Case(case, patient, image, labels, metadata)


def _split_folders(root: Path) -> list[tuple[str, Path, Path]] | None:
    images, labels = root / "images", root / "labels"
    if not images.is_dir():
        return None
    if not labels.is_dir():
        raise InputError(f"{root}: has images/ but no labels/ folder (expected {LAYOUT})")
    by_name = {stem_of(p): p for p in readable_files(labels)}
    return [(stem_of(p), p, by_name.get(stem_of(p))) for p in readable_files(images)]


def _without_tag(name: str, tags: tuple[str, ...]) -> tuple[str, bool]:
    """(name without a trailing tag, whether it had one); tags compare case-insensitively."""
    tag = next((t for t in tags if name.lower().endswith(t)), None)
    return (name[: -len(tag)], True) if tag else (name, False)


def _side_by_side(root: Path) -> list[tuple[str, Path, Path | None]]:
    """(case, image, label or None), paired by name: NAME[_image] with NAME_label or NAME.seg.nrrd."""
    images: dict[str, Path] = {}
    labels: dict[str, Path] = {}
    for path in readable_files(root):
        name, tagged = _without_tag(stem_of(path), LABEL_TAGS)
        if tagged or file_kind(path) == "segmentation":
            labels[name] = path
        else:
            images[_without_tag(name, IMAGE_TAGS)[0]] = path
    return [(name, path, labels.get(name)) for name, path in sorted(images.items())]


def scan(root: str | Path, *, schema: LabelSchema = ECHOSYNTH, patient_pattern: str | None = None) -> Scan:
    """Find image / label-map pairs in ``root`` (see the module docstring for the layouts)."""
    root = require_directory(root, "image/label folder")
    triples = _split_folders(root)
    if triples is None:
        triples = _side_by_side(root)
    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    for case, image, label in triples:
        if label is None:
            skipped.append(Skipped(str(image), "no label file found for this image"))
            continue
        patient = patient_id_for(case, patient_pattern)

        def load(case=case, patient=patient, image=image, label=label) -> Case:
            return _load(case, patient, image, label, schema)

        refs.append(CaseRef(case, patient, with_data_files(image, label), load))
    return require_cases(Scan("folder", root, unique_ids(refs), skipped), LAYOUT)
