"""Synthesizing for label files: read and check every input first, write everything at the end.

Outputs go to a staging folder beside ``out_dir`` and are moved in only when all are written, so a failed
run leaves nothing behind. Names: ``<stem>_synth<NN>.<ext>`` (the input's image format; ``.nrrd`` for
``.seg.nrrd`` inputs); with ``augment`` also ``<stem>_aug<KK><suffix>`` (new label maps, input format)
and ``<stem>_aug<KK>_synth<NN>.<ext>``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from EchoSynthLib.data.io import file_kind, full_suffix, read_label_map, stem_of, write_image, write_label_map
from EchoSynthLib.data.labels import LabelSchema
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.sampling.generators import Generator


@dataclass(frozen=True)
class SynthesisOutput:
    """What one label map gave: its images and, for an augmented anatomy, the new label map."""

    source: Path
    name: str
    images: tuple[Path, ...]
    labels: Path | None = None


def _image_suffix(path: Path) -> str:
    return ".nrrd" if file_kind(path) == "segmentation" else full_suffix(path)


def read_checked_maps(generator: Generator, inputs: Sequence[Path], schema: LabelSchema) -> list[Volume]:
    """Every input read and prepared for ``generator``; the first bad one is an InputError naming it."""
    maps = []
    for path in inputs:
        try:
            maps.append(generator.prepare(read_label_map(path, schema)))
        except InputError as error:
            message = str(error)
            raise InputError(message if str(path) in message else f"{path}: {message}") from None
    return maps


def synthesize_files(
    generator: Generator,
    inputs: Sequence[Path],
    out_dir: str | Path,
    *,
    schema: LabelSchema,
    n: int = 1,
    seed: int = 0,
    augment: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[SynthesisOutput]:
    """Images (and, with ``augment``, new label maps and their images) for every input label file.

    ``progress(fraction, name)`` follows the work done over all maps."""
    if n < 1 or augment < 0:
        raise InputError(f"n must be at least 1 and augment at least 0, got {n} and {augment}")
    maps = read_checked_maps(generator, inputs, schema)
    if augment:
        from EchoSynthLib.augmentation import augment_many
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthesize.", dir=out_dir))
    outputs: list[SynthesisOutput] = []
    total = len(maps) * (1 + augment)
    try:
        for path, labels in zip(inputs, maps, strict=True):
            stem, suffix = stem_of(path), _image_suffix(path)
            jobs: list[tuple[str, Volume, Path | None]] = [(stem, labels, None)]
            for index, variant in enumerate(augment_many(labels, augment, seed) if augment else []):
                name = f"{stem}_aug{index:02d}"
                written = write_label_map(variant, staging / f"{name}{full_suffix(path)}")
                jobs.append((name, variant, out_dir / written.name))
            for name, label_map, written_labels in jobs:
                done = len(outputs)

                def advance(fraction: float, done: int = done, name: str = name) -> None:
                    if progress is not None:
                        progress((done + fraction) / total, name)

                images = generator.generate(label_map, n, seed, advance)
                paths = tuple(
                    out_dir / write_image(image, staging / f"{name}_synth{index:02d}{suffix}").name
                    for index, image in enumerate(images)
                )
                outputs.append(SynthesisOutput(Path(path), name, paths, written_labels))
        # Every staged file moves, .mhd headers last (their data files must be there first).
        for source in sorted(staging.iterdir(), key=lambda p: p.suffix.lower() == ".mhd"):
            os.replace(source, out_dir / source.name)
        return outputs
    finally:
        shutil.rmtree(staging, ignore_errors=True)
