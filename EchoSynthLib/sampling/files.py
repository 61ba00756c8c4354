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
from pathlib import Path

from EchoSynthLib.data.io import file_kind, full_suffix, read_label_map, stem_of, write_image, write_label_map
from EchoSynthLib.data.labels import LabelSchema
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.sampling.synthesizer import Synthesizer, slice_of, with_sector


def _image_suffix(path: Path) -> str:
    return ".nrrd" if file_kind(path) == "segmentation" else full_suffix(path)


def synthesize_files(
    synthesizer: Synthesizer,
    inputs: Sequence[Path],
    out_dir: str | Path,
    *,
    schema: LabelSchema,
    n: int = 1,
    steps: int = 25,
    sampler: str = "dpm++sde",
    seed: int = 0,
    augment: int = 0,
    slice_index: int | None = None,
    guidance_scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Images (and, with ``augment``, new label maps and their images) for every input label file."""
    from EchoSynthLib.augmentation import augment_many

    maps: list[tuple[Path, Volume]] = []
    for path in inputs:
        labels = with_sector(slice_of(read_label_map(path, schema), slice_index))
        synthesizer.conditioning(labels)  # checks values and content before anything is written
        maps.append((path, labels))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthesize.", dir=out_dir))
    written: list[Path] = []
    try:
        for path, labels in maps:
            stem, suffix = stem_of(path), _image_suffix(path)
            jobs = [(stem, labels)]
            for index, variant in enumerate(augment_many(labels, augment, seed) if augment else []):
                name = f"{stem}_aug{index:02d}"
                written.append(write_label_map(variant, staging / f"{name}{full_suffix(path)}"))
                jobs.append((name, variant))
            for name, label_map in jobs:
                images = synthesizer.synthesize(
                    label_map, n=n, steps=steps, sampler=sampler, seed=seed, guidance_scale=guidance_scale
                )
                for index, image in enumerate(images):
                    written.append(write_image(image, staging / f"{name}_synth{index:02d}{suffix}"))
                if progress is not None:
                    progress(name)
        # Every staged file moves, .mhd headers last (their data files must be there first).
        for source in sorted(staging.iterdir(), key=lambda p: p.suffix.lower() == ".mhd"):
            os.replace(source, out_dir / source.name)
        return [out_dir / p.name for p in written]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
