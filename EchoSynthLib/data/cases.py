"""What every dataset reader yields: cases found by a cheap scan, each loaded on demand.

A reader's ``scan(root)`` lists :class:`CaseRef` objects (id, patient, the source files, an optional
split the dataset itself defines) and the :class:`Skipped` items it already knows are unusable; the
expensive ``CaseRef.load()`` reads the files into a :class:`Case` with a canonical label map. Splitting
by patient happens between the two steps, so nothing is read twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib.data.labels import ECHOSYNTH, check_label_values
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class Case:
    """One image with its canonical label map (same grid) and what is known about it."""

    case_id: str
    patient_id: str
    image: Volume
    labels: Volume
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.image.same_geometry(self.labels, tolerance=1e-4):
            raise InputError(
                f"{self.case_id}: image and label map grids differ "
                f"(image {self.image.describe_geometry()}; labels {self.labels.describe_geometry()})"
            )
        check_label_values(self.labels.array, [s.label for s in ECHOSYNTH.values.values()], ECHOSYNTH.name)
        if np.issubdtype(self.image.array.dtype, np.floating) and not np.all(np.isfinite(self.image.array)):
            raise InputError(f"{self.case_id}: the image contains NaN or infinite values")


@dataclass(frozen=True, eq=False)
class CaseRef:
    """A case found by a scan: enough to split and fingerprint it, and a function that reads it."""

    case_id: str
    patient_id: str
    sources: tuple[Path, ...]
    load: Callable[[], Case]
    split: str | None = None  # the dataset's own split, when it defines one


@dataclass(frozen=True)
class Skipped:
    """Something a reader could not use, and why."""

    source: str
    reason: str


@dataclass
class Scan:
    """The result of scanning a dataset root."""

    dataset: str
    root: Path
    cases: list[CaseRef]
    skipped: list[Skipped] = field(default_factory=list)
    extra_sources: tuple[Path, ...] = ()  # files every case depends on (CSV tables, dataset.json)

    def source_files(self) -> list[Path]:
        """Every file the scan's cases read, once each, sorted."""
        files = set(self.extra_sources)
        for ref in self.cases:
            files.update(ref.sources)
        return sorted(files)


def require_directory(root: str | Path, dataset: str) -> Path:
    """The root as a Path, or an InputError naming the dataset if it is not an existing folder."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder (expected the {dataset} dataset root)")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (expected the {dataset} dataset root)")
    return root


def require_cases(scan: Scan, expected_layout: str) -> Scan:
    """The scan, or an InputError describing the expected layout if it found no case at all."""
    if not scan.cases:
        detail = f"; skipped {len(scan.skipped)}: {scan.skipped[0].reason}" if scan.skipped else ""
        raise InputError(f"{scan.root}: no {scan.dataset} cases found (expected {expected_layout}){detail}")
    return scan


def unique_ids(refs: Iterable[CaseRef]) -> list[CaseRef]:
    """The refs, after checking no case id appears twice (ids name cache files)."""
    refs = list(refs)
    seen: dict[str, CaseRef] = {}
    for ref in refs:
        if ref.case_id in seen:
            raise InputError(
                f"case id '{ref.case_id}' appears twice ({seen[ref.case_id].sources[0]} and {ref.sources[0]})"
            )
        seen[ref.case_id] = ref
    return refs
