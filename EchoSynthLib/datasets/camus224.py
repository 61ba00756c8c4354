"""The resampled CAMUS arrays: ``camus224_{train,val[,test]}.npz`` with ``images``, ``labels`` and ``ids``.

Images are uint8 (N, 224, 224), apex at row 0, sector on black; labels use the CAMUS values; ids look
like ``patient0012_4CH_ED``. Physical spacing is lost, so pixels get unit spacing. The split is the
file's.
"""

from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path

import numpy as np

from EchoSynthLib.data.cases import Case, CaseRef, Scan, Skipped, require_cases, require_directory, unique_ids
from EchoSynthLib.data.labels import CAMUS
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

LAYOUT = "camus224_{train,val}.npz with arrays images, labels, ids"
_FILE = re.compile(r"^camus224_(train|val|test)\.npz$")
_ID = re.compile(r"^(patient\d+)_(2CH|4CH)_(ED|ES)$", re.IGNORECASE)


@functools.lru_cache(maxsize=3)
def _arrays(path: Path, mtime_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """images, labels, ids of one file, checked once and shared by all its cases."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = {"images", "labels", "ids"} - set(data.files)
            if missing:
                raise InputError(f"{path}: missing array(s) {sorted(missing)} (expected {LAYOUT})")
            images, labels, ids = data["images"], data["labels"], data["ids"]
    except InputError:
        raise  # an InputError is a ValueError: keep its own message
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # a truncated archive: BadZipFile
        raise InputError(f"{path}: cannot be read as a .npz archive ({error})") from None
    if images.ndim != 3 or images.shape != labels.shape or len(ids) != images.shape[0]:
        raise InputError(
            f"{path}: images {images.shape}, labels {labels.shape} and ids ({len(ids)}) do not match "
            "(expected (N, H, W), (N, H, W), (N,))"
        )
    return images, labels, ids.astype(str)


def _load(path: Path, index: int, case_id: str, patient: str, split: str, view: str, phase: str) -> Case:
    images, labels, _ = _arrays(path, path.stat().st_mtime_ns)
    try:
        canonical = CAMUS.to_canonical(labels[index])
    except InputError as error:
        raise InputError(f"{path}: case {case_id}: {error}") from None
    metadata = {"dataset": "camus224", "split": split, "view": view, "phase": phase, "index": index}
    return Case(case_id, patient, Volume.from_2d(images[index]), Volume.from_2d(canonical), metadata)


def scan(root: str | Path) -> Scan:
    """List every case of every ``camus224_*.npz`` in ``root``; the split comes from the file name."""
    root = require_directory(root, "camus224")
    refs: list[CaseRef] = []
    skipped: list[Skipped] = []
    for path in sorted(p for p in root.iterdir() if _FILE.match(p.name)):
        split = _FILE.match(path.name).group(1)
        _, _, ids = _arrays(path, path.stat().st_mtime_ns)
        for index, case_id in enumerate(ids):
            match = _ID.match(case_id)
            if match is None:
                skipped.append(Skipped(f"{path}:{case_id}", "id is not patientNNNN_{2CH,4CH}_{ED,ES}"))
                continue
            patient, view, phase = match.group(1), match.group(2).upper(), match.group(3).upper()

            def load(
                path=path, index=index, case_id=case_id, patient=patient, view=view, phase=phase, split=split
            ) -> Case:
                return _load(path, index, case_id, patient, split, view, phase)

            refs.append(CaseRef(case_id, patient, (path,), load, split))
    return require_cases(Scan("camus224", root, unique_ids(refs), skipped), LAYOUT)
