"""Paired cases from a paired-generation model (DIFF-3), written as files: ``case_NNNN_image.nrrd`` and
``case_NNNN_labels.seg.nrrd`` (named segments, the same grid), the pairing ``echosynth evaluate`` and
``prepare folder`` read. Everything is staged and appears at the end, or nothing does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.data.outputs import new_files
from EchoSynthLib.errors import InputError

CHUNK = 16  # pairs made (and held in memory) at a time


def pair_names(n: int, first: int = 0, prefix: str = "case") -> list[tuple[str, str]]:
    """(image, labels) file names of pairs ``first .. first + n - 1``."""
    return [
        (f"{prefix}_{k:04d}_image.nrrd", f"{prefix}_{k:04d}_labels.seg.nrrd") for k in range(first, first + n)
    ]


def open_paired_model(name: str, device: str = "auto", warn: Callable[[str], None] | None = None):
    """The paired-generation model ``name`` (an installed name or a package folder), loaded; an InputError
    names a package of another task."""
    from EchoSynthLib.inference.generators import SIMULATOR
    from EchoSynthLib.store.families import NOTHING_TO_PAIRS, kinds_for, require_task
    from EchoSynthLib.store.package import read_package_header
    from EchoSynthLib.store.registry import resolve_model

    if name == SIMULATOR:
        raise InputError(
            "the training-free simulator makes images of label maps; generating cases needs a "
            f"paired-generation model (kinds: {', '.join(kinds_for(NOTHING_TO_PAIRS))})"
        )
    folder = resolve_model(name)
    family = require_task(read_package_header(folder)["kind"], NOTHING_TO_PAIRS, f"'{name}'")
    return family.load().open_model(folder, device, warn)


def generate_pair_files(
    model,
    out_dir: str | Path,
    n: int,
    *,
    seed: int = 0,
    steps: int = 25,
    sampler: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[tuple[Path, Path]]:
    """``n`` pairs of a loaded paired model (``models.latent.pipeline.LatentModel``) into ``out_dir``;
    pair k uses seed + k; ``sampler`` as ``LatentModel.sampler_for`` reads it. An existing file of the same
    name is an error (nothing is overwritten)."""
    if n < 1:
        raise InputError(f"n must be at least 1, got {n}")
    check_seed(seed, n)
    model.resolve(steps=steps, sampler=sampler, strength=1.0)  # checked before anything is written
    out_dir = Path(out_dir)
    names = pair_names(n)
    written: list[tuple[Path, Path]] = []
    with new_files(out_dir, [name for pair in names for name in pair]) as staged:
        for start in range(0, n, CHUNK):
            count = min(CHUNK, n - start)

            def advance(done: int, total: int, start: int = start, count: int = count) -> None:
                if progress is not None:
                    progress((start + count * done / total) / n)

            pairs = model.generate_pairs(
                count, steps=steps, sampler=sampler, seed=seed + start, progress=advance
            )
            for (image, labels), (image_name, labels_name) in zip(
                pairs, names[start : start + count], strict=True
            ):
                image_path = write_image(image, staged.path(image_name))
                labels_path = write_label_map(labels, staged.path(labels_name))
                written.append((staged.final(image_path), staged.final(labels_path)))
    return written
