"""The training cache: one ``.npz`` per case under ``CACHE/<split>/`` and a JSON manifest.

``manifest.json`` records the format version, the dataset and its root, the reader options and
preprocessing settings, the classes, per-split case and patient counts, every case (id, patient, file,
metadata, grids), what was skipped and why, and the SHA-256 of every source file. Building is atomic (a
staged folder replaces the old cache whole) and is skipped when the manifest already describes the same
inputs and settings; source files are only re-hashed when their size or modification time changed.
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from EchoSynthLib import __version__
from EchoSynthLib.checks import check_memory
from EchoSynthLib.data.atomic import sha256_of
from EchoSynthLib.data.cases import SPLITS, Scan, Skipped
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.data.outputs import check_folder_output, owned_folder
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.prepare import PreparedCase, PrepareSettings, prepare_case
from EchoSynthLib.preprocessing.resample import Grid
from EchoSynthLib.preprocessing.splits import assign_splits

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PREPARE_COMMAND = "prepare"  # the command that writes (and may replace) a cache
# Peak memory per voxel of the target grid while one case is prepared (float images, resampling, labels).
PREPARE_BYTES_PER_VOXEL = 64
# Keys that identify what a cache was built from; a rerun with the same values is a no-op.
_IDENTITY_KEYS = ("format_version", "dataset", "root", "options", "settings", "use_dataset_splits", "sources")


def source_checksums(files: list[Path], root: Path, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """{path relative to root: size, mtime_ns, sha256}; hashes are reused where size and mtime match."""
    previous = previous or {}
    sums = {}
    for path in files:
        stat = path.stat()
        key = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        known = previous.get(key, {})
        same = known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns
        digest = known["sha256"] if same and "sha256" in known else sha256_of(path)
        sums[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return sums


def _json_value(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in the manifest")


def _file_name(case_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", case_id) + ".npz"


def read_manifest(cache: Path) -> dict[str, Any] | None:
    """The cache's manifest, or None if there is no cache there; an InputError if it is not ours."""
    path = Path(cache) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a readable EchoSynth cache manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise InputError(f"{path}: cache format version {found!r}, this EchoSynth reads {FORMAT_VERSION}")
    return manifest


@dataclass(frozen=True)
class CacheManifest:
    """What a cache holds, typed: the dataset, the grid (spatial dims, shape as (rows, cols) or 3D), the
    class layout, the preparation settings, per-split counts and cases; ``document`` is the whole JSON
    (sources, creation, reader options) for provenance."""

    dataset: str
    spatial_dims: int
    shape: tuple[int, ...]
    layout: ClassLayout
    settings: dict[str, Any]
    counts: dict[str, dict[str, int]]
    cases: dict[str, list[dict[str, Any]]]
    skipped: list[dict[str, str]]
    document: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, document: dict[str, Any], where: str | Path) -> CacheManifest:
        """The typed manifest; an InputError names a missing or malformed entry of the file ``where``."""
        try:
            shape = tuple(int(n) for n in document["shape"])
            manifest = cls(
                dataset=str(document["dataset"]),
                spatial_dims=int(document["spatial_dims"]),
                shape=shape,
                layout=ClassLayout.from_json(document["classes"], f"{where}: classes"),
                settings=dict(document["settings"]),
                counts={k: dict(v) for k, v in document["counts"].items()},
                cases={k: list(v) for k, v in document["cases"].items()},
                skipped=list(document.get("skipped", [])),
                document=document,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise InputError(
                f"{where}: damaged cache manifest ({type(error).__name__}: {error}); rebuild it"
            ) from None
        if manifest.spatial_dims not in (2, 3) or len(shape) != manifest.spatial_dims:
            raise InputError(
                f"{where}: manifest shape {list(shape)} does not have {manifest.spatial_dims} sides"
            )
        return manifest


@dataclass
class BuildResult:
    """What ``build_cache`` did."""

    manifest: CacheManifest
    rebuilt: bool


def build_cache(
    scan: Scan,
    out: str | Path,
    settings: PrepareSettings,
    *,
    options: dict[str, Any] | None = None,
    use_dataset_splits: bool = True,
    strict: bool = False,
    progress: Callable[[str], None] | None = None,
) -> BuildResult:
    """Prepare every case of ``scan`` into a cache at ``out`` (see the module docstring).

    Cases that cannot be read or prepared are skipped with their reason (``strict``: the first one is
    an error). ``progress`` is called with each case id.
    """
    out = Path(out)
    check_folder_output(out, PREPARE_COMMAND, [scan.root], also_owned=MANIFEST)  # never inside ROOT
    check_memory(
        PREPARE_BYTES_PER_VOXEL * math.prod(settings.size), f"preparing cases of {settings.size} voxels"
    )
    previous = read_manifest(out) if out.is_dir() else None
    identity = {
        "format_version": FORMAT_VERSION,
        "dataset": scan.dataset,
        "root": str(scan.root.resolve()),
        "options": json.loads(json.dumps(options or {}, default=_json_value)),
        "settings": settings.as_dict(),
        "use_dataset_splits": use_dataset_splits,
        "sources": source_checksums(scan.source_files(), scan.root, (previous or {}).get("sources")),
    }
    if previous is not None and all(previous.get(k) == identity[k] for k in _IDENTITY_KEYS):
        return BuildResult(CacheManifest.from_json(previous, out / MANIFEST), rebuilt=False)

    splits = assign_splits(scan.cases, settings.split_fractions, settings.split_seed, use_dataset_splits)
    skipped = list(scan.skipped)
    entries: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    shapes: set[tuple[int, ...]] = set()
    with owned_folder(out, PREPARE_COMMAND, [scan.root], also_owned=MANIFEST) as staging:
        for ref in scan.cases:
            if progress is not None:
                progress(ref.case_id)
            try:
                prepared = prepare_case(ref.load(), settings)
            except InputError as error:
                if strict:
                    raise
                skipped.append(Skipped(ref.case_id, str(error)))
                continue
            split = splits[ref.case_id]
            entries[split].append(_write_case(staging, split, prepared))
            shapes.add(prepared.image.shape)
        if not any(entries.values()):
            reasons = "; ".join(f"{s.source}: {s.reason}" for s in skipped[:3])
            raise InputError(f"no case of {scan.root} could be prepared ({len(skipped)} skipped: {reasons})")
        manifest = _manifest(identity, settings, entries, shapes, skipped)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_value))
    return BuildResult(CacheManifest.from_json(manifest, out / MANIFEST), rebuilt=True)


def write_prepared_cache(
    out: str | Path, cases: dict[str, list[PreparedCase]], settings: PrepareSettings, dataset: str
) -> CacheIndex:
    """A cache of cases already prepared with ``settings`` (e.g. an evaluation's image sets), written as
    ``build_cache`` writes one (replaced whole); each case's patient id is its own split's."""
    out = Path(out)
    shapes = {c.image.shape for split in cases.values() for c in split}
    if len(shapes) != 1:
        raise InputError(f"{out}: prepared cases must share one shape, got {sorted(shapes)}")
    identity = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "root": "",
        "options": {},
        "settings": settings.as_dict(),
        "use_dataset_splits": True,
        "sources": {},
    }
    entries: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    with owned_folder(out, PREPARE_COMMAND, also_owned=MANIFEST) as staging:
        for split, prepared in cases.items():
            entries[split] = [_write_case(staging, split, case) for case in prepared]
        document = _manifest(identity, settings, entries, shapes, [])
        (staging / MANIFEST).write_text(json.dumps(document, indent=1, default=_json_value))
    return CacheIndex.open(out)


def _write_case(staging: Path, split: str, prepared: PreparedCase) -> dict[str, Any]:
    folder = staging / split
    folder.mkdir(exist_ok=True)
    name = _file_name(prepared.case_id)
    np.savez(folder / name, image=prepared.image, labels=prepared.labels)
    return {
        "case_id": prepared.case_id,
        "patient_id": prepared.patient_id,
        "file": f"{split}/{name}",
        "metadata": prepared.metadata,
    }


def _manifest(
    identity: dict[str, Any],
    settings: PrepareSettings,
    entries: dict[str, list[dict[str, Any]]],
    shapes: set[tuple[int, ...]],
    skipped: list[Skipped],
) -> dict[str, Any]:
    patients = {split: {e["patient_id"] for e in cases} for split, cases in entries.items()}
    for first in SPLITS:
        for second in SPLITS[SPLITS.index(first) + 1 :]:
            shared = patients[first] & patients[second]
            if shared:  # assign_splits makes this impossible; checked because leakage would be silent
                raise InputError(f"patients {sorted(shared)[:3]} are in both {first} and {second}")
    (shape,) = shapes
    return {
        **identity,
        "created_by": f"EchoSynth {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "spatial_dims": len(shape),
        "shape": list(shape),
        "classes": ClassLayout.of(settings.schema).as_json(),
        "intensity": "image in [-1, 1]: uint8 as x / 127.5 - 1, other types by per-case min..max",
        "counts": {
            split: {"cases": len(entries[split]), "patients": len(patients[split])} for split in SPLITS
        },
        "skipped": [{"source": s.source, "reason": s.reason} for s in skipped],
        "cases": {split: cases for split, cases in entries.items() if cases},
    }


@dataclass(frozen=True)
class CacheIndex:
    """An opened cache: its manifest and access to its cases."""

    path: Path
    manifest: CacheManifest

    @classmethod
    def open(cls, path: str | Path) -> CacheIndex:
        """Open the cache at ``path``; an InputError if there is none."""
        path = Path(path)
        document = read_manifest(path) if path.is_dir() else None
        if document is None:
            raise InputError(f"{path}: no EchoSynth cache here (run 'echosynth prepare ... --out {path}')")
        return cls(path, CacheManifest.from_json(document, path / MANIFEST))

    def cases(self, split: str) -> list[dict[str, Any]]:
        """The manifest entries of one split (empty if the split has no case)."""
        if split not in SPLITS:
            raise InputError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
        return self.manifest.cases.get(split, [])

    def load(self, entry: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(image float32, labels uint8) of one manifest entry."""
        path = self.path / entry["file"]
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["image"], data["labels"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise InputError(f"{path}: cache file missing or damaged ({error}); rebuild the cache") from None

    def label_map(self, entry: dict[str, Any], labels: np.ndarray) -> Volume:
        """A case's labels (as ``load`` gives them) as a canonical label map on the case's grid: what a
        generator or the simulator takes."""
        canonical = self.manifest.layout.to_canonical(labels).astype(np.uint8)
        grid = Grid.from_dict(entry["metadata"]["grid"])
        array = canonical[np.newaxis] if canonical.ndim == 2 else canonical
        return Volume(array, grid.spacing, grid.origin, grid.direction)

    def check(self, split: str) -> None:
        """Read every case of ``split`` once and refuse (InputError naming the file) what training would
        only trip over later: unreadable or truncated files, object arrays, non-numeric or NaN/infinite
        images, labels that are not integers, an image and labels of different shapes."""
        for entry in self.cases(split):
            image, labels = self.load(entry)
            path = self.path / entry["file"]
            problem = None
            if image.dtype.kind not in "fiu" or labels.dtype.kind not in "iu":
                problem = f"image {image.dtype}, labels {labels.dtype}: expected numbers and integer labels"
            elif image.shape != labels.shape:
                problem = f"image {image.shape} and labels {labels.shape} differ in shape"
            elif not np.isfinite(image).all():
                problem = "NaN or infinite image values"
            if problem is not None:
                raise InputError(f"{path}: cache file damaged ({problem}); rebuild the cache")
