"""Translation: echo images of one scanner in, images with the look a model learned (CAMUS's, say) out,
the anatomy kept and every output on its source's exact grid.

The anatomy reaches the model as a label map: the user's own (``labels``, one file per image, on the image's
grid), the project's segmenter's (``segmenter``), or both: ``merge_labels`` keeps every structure the user
labelled as drawn and fills only the missing ones from the segmenter (EchoNet-Dynamic traces the LV
cavity alone). Each output records which structures came from where. Everything is read, checked and
segmented before anything is written; outputs appear together (``<stem>_translated<suffix>``, the guide
map ``<stem>_translated_labels.seg.nrrd`` and ``translation.json``) or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.checks import check_outputs, check_seed
from EchoSynthLib.data.atomic import staged_files
from EchoSynthLib.data.io import (
    full_suffix,
    read_image,
    read_label_map,
    stem_of,
    write_image,
    write_label_map,
)
from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema, Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.sampling.generators import Generator

REPORT = "translation.json"
FROM_LABELS, FROM_SEGMENTER, ABSENT = "labels", "segmenter", "absent"
HEART = (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM)


@dataclass(frozen=True)
class TranslationOutput:
    """One translated image: its source, the files written and where each structure came from."""

    source: str
    image: Path
    labels: Path
    structures: dict[str, str]


def merge_labels(given: Volume | None, segmented: Volume | None) -> tuple[Volume, dict[str, str]]:
    """The label map to translate with, and structure -> 'labels' | 'segmenter' | 'absent'.

    Every structure present in ``given`` is kept exactly as drawn; a structure it lacks comes from
    ``segmented`` where that has it, except on voxels the given structures hold. Segmenter voxels of a
    structure the user drew (outside the user's outline) become sector."""
    if given is None and segmented is None:
        raise InputError("an image needs its label map (--labels) or the segmenter (--segment)")
    base = given if given is not None else segmented
    present = set(np.unique(given.array).tolist()) if given is not None else set()
    sources = {}
    if segmented is None:
        merged = given.array.astype(np.uint8, copy=True)
    else:
        merged = segmented.array.astype(np.uint8, copy=True)
        if given is not None:
            mine = np.isin(given.array, [s.label for s in HEART if s.label in present])
            drawn_elsewhere = np.isin(merged, [s.label for s in HEART if s.label in present]) & ~mine
            merged[drawn_elsewhere] = Structure.SECTOR.label
            merged[mine] = given.array[mine]
    for structure in HEART:
        if structure.label in present:
            sources[structure.value] = FROM_LABELS
        elif segmented is not None and (segmented.array == structure.label).any():
            sources[structure.value] = FROM_SEGMENTER
        else:
            sources[structure.value] = ABSENT
    return base.with_array(merged), sources


def _two_d(image: Volume) -> Volume:
    """The image, if it is 2D (one frame)."""
    if not image.is_2d:
        raise InputError(
            f"a {'x'.join(map(str, image.size))} volume; translation takes 2D images (one frame)"
        )
    return image


@dataclass(frozen=True)
class TranslationSource:
    """One image to translate: the output stem and image suffix, what to call it in messages and the
    report, and how to read it (image, and the user's label map on its grid or None)."""

    stem: str
    suffix: str
    origin: str
    load: Callable[[], tuple[Volume, Volume | None]]


def file_sources(
    images: Sequence[Path], labels: Sequence[Path] | None = None, schema: LabelSchema = ECHOSYNTH
) -> list[TranslationSource]:
    """Image files (and one label file per image, in order) as sources."""
    images = [Path(p) for p in images]
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} label files: give one label file per image")

    def load(index: int) -> tuple[Volume, Volume | None]:
        image = _two_d(read_image(images[index]))
        if labels is None:
            return image, None
        given = read_label_map(labels[index], schema)
        if not given.same_geometry(image):
            raise InputError("the label map's grid differs from the image's")
        return image, given

    return [
        TranslationSource(
            stem_of(path),
            full_suffix(path),
            str(path) if labels is None else f"{path} (labels {labels[index]})",
            lambda index=index: load(index),
        )
        for index, path in enumerate(images)
    ]


def echonet_sources(root: str | Path, split: str | None = None) -> list[TranslationSource]:
    """The traced ED and ES frames of every EchoNet-Dynamic video under ``root`` (of one FileList
    split, if given), each with its LV cavity tracing as the user's label map."""
    from EchoSynthLib.datasets.echonet import scan

    refs = [r for r in scan(root).cases if split is None or r.split == split]
    if not refs:
        raise InputError(
            f"{root}: no traced EchoNet-Dynamic frame" + (f" in split '{split}'" if split else "")
        )

    def load(ref) -> tuple[Volume, Volume]:
        case = ref.load()
        return case.image, case.labels

    return [
        TranslationSource(r.case_id, ".nii.gz", f"{r.sources[0]} ({r.case_id})", lambda r=r: load(r))
        for r in refs
    ]


def translate_files(
    generator: Generator,
    sources: Sequence[TranslationSource],
    out_dir: str | Path,
    *,
    segment: Callable[[Volume], Volume] | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    inputs: Sequence[Path] = (),
) -> list[TranslationOutput]:
    """Translate every source (source i uses seed + i); ``segment``: image -> canonical label map on its
    grid (e.g. ``Segmenter.segment``); ``inputs``: the files read, never overwritten."""
    check_seed(seed, len(sources))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    names = [(f"{s.stem}_translated{s.suffix}", f"{s.stem}_translated_labels.seg.nrrd") for s in sources]
    seen: dict[str, str] = {}
    for source, (image_name, _) in zip(sources, names, strict=True):
        if image_name in seen:
            raise InputError(f"{seen[image_name]} and {source.origin} would both write {image_name}")
        seen[image_name] = source.origin
    finals = [out_dir / n for pair in names for n in pair] + [out_dir / REPORT]
    check_outputs(finals, inputs)
    existing = [f for f in finals if f.exists()]
    if existing:
        raise InputError(f"{existing[0]}: exists; choose another --out or remove it")
    prepared = []
    for source in sources:
        try:
            image, given = source.load()
            _two_d(image)
            if given is None and segment is None:
                raise InputError("no label map: give --labels or --segment")
            merged, structures = merge_labels(given, segment(image) if segment is not None else None)
            prepared.append((generator.prepare(merged), structures))
        except InputError as error:
            message = str(error)
            raise InputError(message if source.origin in message else f"{source.origin}: {message}") from None
    outputs: list[TranslationOutput] = []
    with staged_files(out_dir) as staged:
        for index, (source, (labels_map, structures), (image_name, labels_name)) in enumerate(
            zip(sources, prepared, names, strict=True)
        ):
            (translated,) = generator.generate(labels_map, 1, seed + index)
            written_image = staged.final(write_image(translated, staged.path(image_name)))
            written_labels = staged.final(write_label_map(labels_map, staged.path(labels_name)))
            outputs.append(TranslationOutput(source.origin, written_image, written_labels, structures))
            if progress is not None:
                progress((index + 1) / len(sources), source.stem)
        report = {
            "generator": generator.description,
            "seed": seed,
            "images": [
                {
                    "source": o.source,
                    "image": o.image.name,
                    "labels": o.labels.name,
                    "structures": o.structures,
                    "seed": seed + i,
                }
                for i, o in enumerate(outputs)
            ],
        }
        staged.path(REPORT).write_text(json.dumps(report, indent=1))
    return outputs
