"""Augmenting label files: every input is read and checked before anything is written."""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from EchoSynthLib.augmentation.labelmaps import LabelMapAugmentation, augment_label_map, variant_seed
from EchoSynthLib.checks import check_disk, check_memory, check_seed
from EchoSynthLib.data.io import (
    file_kind,
    find_label_files,
    full_suffix,
    read_label_map,
    stem_of,
    write_label_map,
)
from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema, require_heart, schema_named
from EchoSynthLib.data.outputs import check_new_files, new_files
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

PathLike = str | os.PathLike


PLANNED_NAME_BYTES = 400  # one planned output path (a Path and its place in the lists) in memory


def output_path(path: PathLike, index: int, out_dir: PathLike, n: int) -> Path:
    """``out_dir/<stem>_aug<NN><suffix>``, keeping the input's format."""
    file_kind(path)
    suffix, stem = full_suffix(path), stem_of(path)
    width = max(2, len(str(n - 1)))
    return Path(out_dir) / f"{stem}_aug{index:0{width}d}{suffix}"


def file_seed(seed: int, path: PathLike) -> int:
    """The seed for one file's variants: from ``seed`` and the file name, so other files don't matter."""
    name_hash = zlib.crc32(Path(path).name.encode("utf-8"))
    return int(np.random.SeedSequence([seed, name_hash]).generate_state(1)[0])


def _read_checked(path: Path, schema: LabelSchema) -> Volume:
    labels = read_label_map(path, schema)
    try:
        require_heart(labels.array)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    return labels


def augment_files(
    inputs: PathLike | Sequence[PathLike],
    n: int,
    out_dir: PathLike,
    seed: int = 0,
    schema: LabelSchema | str = ECHOSYNTH,
    progress: Callable[[Path], None] | None = None,
    settings: LabelMapAugmentation | None = None,
) -> list[Path]:
    """Write ``n`` augmented variants of each label file (or folder of them) to ``out_dir``.

    Label images are read in ``schema`` and written in the canonical one; ``.seg.nrrd`` files keep
    named segments. All inputs are read and checked first, so a bad file writes nothing.
    ``progress`` is called with each path written. Returns the paths written.
    """
    if n < 1:
        raise InputError(f"the number of variants (--n) must be at least 1, got {n}")
    check_seed(seed)
    schema = schema_named(schema) if isinstance(schema, str) else schema
    files = find_label_files(inputs)
    # Before planning a name per output (a huge --n once grew to 8.5 GB doing only that): the names'
    # memory, and the disk the variants will take (each about its input's size).
    count = n * len(files)
    check_memory(count * PLANNED_NAME_BYTES, f"{count} augmented label maps")
    check_disk(out_dir, n * sum(p.stat().st_size for p in files), f"{count} augmented label maps")
    outputs = {path: [output_path(path, i, out_dir, n) for i in range(n)] for path in files}
    planned = [p for paths in outputs.values() for p in paths]
    if len(set(planned)) != len(planned):
        raise InputError("two inputs have the same file name; their outputs would overwrite each other")
    check_new_files(out_dir, [p.name for p in planned], files)  # before any work: nothing is replaced
    maps = {path: _read_checked(path, schema) for path in files}
    settings = settings or LabelMapAugmentation()
    with new_files(out_dir, [p.name for p in planned], files) as staged:
        for path, labels in maps.items():
            base = file_seed(seed, path)
            for index, target in enumerate(outputs[path]):  # one variant in memory at a time
                try:
                    variant = augment_label_map(labels, variant_seed(base, index), settings)
                except InputError as error:
                    raise InputError(f"{path}: {error}") from None
                write_label_map(variant, staged.path(target.name))
                if progress is not None:
                    progress(target)
    return planned
