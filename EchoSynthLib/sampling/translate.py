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

    source: Path
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


def translated_names(path: Path) -> tuple[str, str]:
    """The output file names of one source image."""
    stem = stem_of(path)
    return f"{stem}_translated{full_suffix(path)}", f"{stem}_translated_labels.seg.nrrd"


def translate_files(
    generator: Generator,
    images: Sequence[Path],
    out_dir: str | Path,
    *,
    labels: Sequence[Path] | None = None,
    segment: Callable[[Volume], Volume] | None = None,
    schema: LabelSchema = ECHOSYNTH,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> list[TranslationOutput]:
    """Translate every image (image i uses seed + i); ``labels``: one label file per image, in order;
    ``segment``: image -> canonical label map on its grid (e.g. ``Segmenter.segment``)."""
    images = [Path(p) for p in images]
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} label files: give one label file per image")
    if labels is None and segment is None:
        raise InputError("images need their label maps (--labels) or the segmenter (--segment) to translate")
    check_seed(seed, len(images))
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder")
    names = [translated_names(p) for p in images]
    finals = [out_dir / n for pair in names for n in pair] + [out_dir / REPORT]
    seen: dict[str, Path] = {}
    for path, pair in zip(images, names, strict=True):
        if pair[0] in seen:
            raise InputError(f"{seen[pair[0]]} and {path} would both write {pair[0]}; translate them apart")
        seen[pair[0]] = path
    check_outputs(finals, [*images, *(labels or [])])
    existing = [f for f in finals if f.exists()]
    if existing:
        raise InputError(f"{existing[0]}: exists; choose another --out or remove it")
    prepared = []
    for index, path in enumerate(images):
        try:
            image = read_image(path)
            if not image.is_2d:
                raise InputError(
                    f"a {'x'.join(map(str, image.size))} volume; translation takes 2D images (one frame)"
                )
            given = None
            if labels is not None:
                given = read_label_map(labels[index], schema)
                if not given.same_geometry(image):
                    raise InputError(f"{labels[index]}: its grid differs from the image's")
            merged, sources = merge_labels(given, segment(image) if segment is not None else None)
            prepared.append((generator.prepare(merged), sources))
        except InputError as error:
            message = str(error)
            where = f"{path} (labels {labels[index]})" if labels is not None else str(path)
            raise InputError(message if str(path) in message else f"{where}: {message}") from None
    outputs: list[TranslationOutput] = []
    with staged_files(out_dir) as staged:
        for index, (path, (labels_map, sources), (image_name, labels_name)) in enumerate(
            zip(images, prepared, names, strict=True)
        ):
            (translated,) = generator.generate(labels_map, 1, seed + index)
            written_image = staged.final(write_image(translated, staged.path(image_name)))
            written_labels = staged.final(write_label_map(labels_map, staged.path(labels_name)))
            outputs.append(TranslationOutput(path, written_image, written_labels, sources))
            if progress is not None:
                progress((index + 1) / len(images), path.name)
        report = {
            "generator": generator.description,
            "seed": seed,
            "images": [
                {
                    "source": str(o.source),
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
