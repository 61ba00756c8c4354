"""nnU-Net-style pairs (MITEA's layout): image ``{case}_0000.nii.gz``, label map ``{case}.nii.gz``.

Pairs are found in ``imagesTr``/``labelsTr`` (and ``imagesTs``/``labelsTs``, which become the test split)
or side by side in one folder. Label values are mapped to structures *by name*: from ``--label
name=value`` options, else from the dataset's ``dataset.json`` ("labels", nnU-Net v1 or v2 style), else
from the MITEA default (1 myocardium, 2 cavity).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from EchoSynthLib.data.cases import Case, CaseRef, Scan, Skipped, require_cases, require_directory, unique_ids
from EchoSynthLib.data.io import full_suffix, read_image, readable_files, stem_of, with_data_files
from EchoSynthLib.data.labels import MITEA, LabelSchema, Structure, structure_for_segment_name
from EchoSynthLib.datasets.naming import patient_id_for
from EchoSynthLib.errors import InputError

LAYOUT = "imagesTr/{case}_0000.nii.gz with labelsTr/{case}.nii.gz (or both in one folder)"
_FOLDERS = (("imagesTr", "labelsTr", None), ("imagesTs", "labelsTs", "test"))


def schema_from_names(names: Mapping[str, int], name: str = "dataset") -> LabelSchema:
    """A label schema from {structure name: value}; names are matched like Slicer segment names."""
    values: dict[int, Structure] = {0: Structure.BACKGROUND}
    for label_name, value in names.items():
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise InputError(f"label '{label_name}': value {value!r} is not an integer") from None
        structure = structure_for_segment_name(label_name)
        if value in values and values[value] is not structure:
            raise InputError(f"label value {value} is given twice ({values[value].value} and {label_name})")
        values[value] = structure
    return LabelSchema(name, values)


def _schema_from_dataset_json(path: Path) -> LabelSchema:
    try:
        labels = json.loads(path.read_text())["labels"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: cannot read its 'labels' ({error})") from None
    # nnU-Net v1: {"0": "background", "1": "myocardium"}; v2: {"background": 0, "myocardium": 1}.
    v1 = all(str(k).isdigit() for k in labels)
    names = {str(v): int(k) for k, v in labels.items()} if v1 else dict(labels)
    try:
        return schema_from_names(names, f"{path.parent.name}/dataset.json")
    except InputError as error:
        raise type(error)(f"{path}: {error}") from None


def _pairs(images: Path, labels: Path) -> tuple[list[tuple[str, Path, Path]], list[Skipped]]:
    pairs, skipped = [], []
    label_files = {stem_of(p): p for p in readable_files(labels)}
    for image in readable_files(images):
        case = stem_of(image)
        if not case.endswith("_0000"):
            if images != labels:
                skipped.append(Skipped(str(image), "image name does not end in _0000 (nnU-Net channel 0)"))
            continue
        case = case[: -len("_0000")]
        if case not in label_files:
            skipped.append(Skipped(str(image), f"no label file {case}{full_suffix(image)} in {labels}"))
            continue
        pairs.append((case, image, label_files[case]))
    return pairs, skipped


def _load(
    case: str, patient: str, image_path: Path, label_path: Path, schema: LabelSchema, dataset: str
) -> Case:
    image, labels = read_image(image_path), read_image(label_path)
    if image.array.shape != labels.array.shape:
        raise InputError(
            f"{case}: image {image.array.shape} and label map {labels.array.shape} differ in shape"
        )
    try:
        canonical = schema.to_canonical(labels.array)
    except InputError as error:
        raise InputError(f"{label_path}: {error}") from None
    metadata = {"dataset": dataset.lower(), "image": image_path.name, "labels": label_path.name}
    return Case(case, patient, image, labels.with_array(canonical), metadata)


def scan(
    root: str | Path,
    *,
    label_names: Mapping[str, int] | None = None,
    patient_pattern: str | None = None,
    dataset: str = "MITEA",
) -> Scan:
    """Find nnU-Net-style image/label pairs under ``root``."""
    root = require_directory(root, dataset)
    dataset_json = root / "dataset.json"
    if label_names:
        schema = schema_from_names(label_names, "--label")
    elif dataset_json.is_file():
        schema = _schema_from_dataset_json(dataset_json)
    else:
        schema = MITEA
    folders = [(root / i, root / lab, split) for i, lab, split in _FOLDERS if (root / i).is_dir()]
    if not folders:
        folders = [(root, root, None)]
    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    for images, labels, split in folders:
        if not labels.is_dir():
            raise InputError(f"{images} has no sibling folder {labels.name} (expected {LAYOUT})")
        pairs, folder_skipped = _pairs(images, labels)
        skipped += folder_skipped
        for case, image, label in pairs:
            patient = patient_id_for(case, patient_pattern)

            def load(case=case, patient=patient, image=image, label=label) -> Case:
                return _load(case, patient, image, label, schema, dataset)

            refs.append(CaseRef(case, patient, with_data_files(image, label), load, split))
    extra = (dataset_json,) if dataset_json.is_file() else ()
    return require_cases(Scan(dataset, root, unique_ids(refs), skipped, extra), LAYOUT)
