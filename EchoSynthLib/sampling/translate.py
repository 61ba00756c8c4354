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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.io import (
    full_suffix,
    read_image,
    read_label_map,
    stem_of,
    write_image,
    write_label_map,
)
from EchoSynthLib.data.labels import ECHOSYNTH, LabelSchema, Structure
from EchoSynthLib.data.outputs import check_new_files, new_files
from EchoSynthLib.data.planes import slice_of
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import Generator

REPORT = "translation.json"
STEADY_FRAMES = math.inf  # a video in one look (``steady_look``): measured in docs/BENCHMARKS.md
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


@dataclass(frozen=True)
class TranslationSource:
    """One image to translate: the output stem and image suffix, what to call it in messages and the
    report, and how to read it (image, and the user's label map on its grid or None)."""

    stem: str
    suffix: str
    origin: str
    load: Callable[[], tuple[Volume, Volume | None]]
    group: str = ""  # sources of one group (the frames of a video) share one seed; "": a group of its own


# A label map has a handful of small whole values (0 background .. 4 sector in every schema here); an
# echo image, even a dark or thresholded one, has many grey levels.
LABEL_LIKE_VALUES = 8


def require_echo_image(image: Volume) -> None:
    """InputError for an image that is a label map (a few small whole values) rather than echo."""
    values = np.unique(image.array)
    whole = np.issubdtype(values.dtype, np.integer) or bool(np.all(values == np.round(values)))
    if whole and values.size <= LABEL_LIKE_VALUES and values.max(initial=0) <= LABEL_LIKE_VALUES:
        shown = ", ".join(str(int(v)) for v in values)
        raise InputError(f"holds only the values {shown}: a label map, not an echo image (see --labels)")


def file_sources(
    images: Sequence[Path],
    labels: Sequence[Path] | None = None,
    schema: LabelSchema = ECHOSYNTH,
    group: str = "",
) -> list[TranslationSource]:
    """Image files (and one label file per image, in order) as sources; ``group``: the frames of one
    video, in order (one seed, the look held steady), or "" (each image on its own)."""
    images = [Path(p) for p in images]
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} label files: give one label file per image")

    def load(index: int) -> tuple[Volume, Volume | None]:
        image = read_image(images[index])
        require_echo_image(image)
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
            group,
        )
        for index, path in enumerate(images)
    ]


def echonet_sources(
    root: str | Path,
    split: str | None = None,
    every_frame: bool = False,
    warn: Callable[[str], None] | None = None,
) -> list[TranslationSource]:
    """The traced ED and ES frames of every EchoNet-Dynamic video under ``root`` (of one FileList
    split, if given), each with its LV cavity tracing as the user's label map; with ``every_frame``, every
    frame of those videos (``VIDEO_fNNNN``; the traced ones keep their tracing, the others need the
    segmenter), the frames of a video sharing one seed so that only the anatomy changes from frame to
    frame. Cases the dataset lists but cannot give (a missing video, too few tracings) are said through
    ``warn``, grouped by reason, as ``prepare`` reports them."""
    from EchoSynthLib.datasets.echonet import frame_count, read_video, scan

    found = scan(root)
    if warn is not None:
        reasons: dict[str, list[str]] = {}
        for skipped in found.skipped:
            reasons.setdefault(skipped.reason, []).append(skipped.source)
        for reason, sources in reasons.items():
            warn(f"skipped {len(sources)}: {reason} (e.g. {sources[0]})")
    refs = [r for r in found.cases if split is None or r.split == split]
    if not refs:
        where = f" in split '{split}'" if split else ""
        raise InputError(f"{root}: no traced EchoNet-Dynamic frame{where}")

    def load(ref) -> tuple[Volume, Volume]:
        case = ref.load()
        return case.image, case.labels

    if not every_frame:
        return [
            TranslationSource(r.case_id, ".nii.gz", f"{r.sources[0]} ({r.case_id})", lambda r=r: load(r))
            for r in refs
        ]
    videos: dict[str, list] = {}
    for ref in refs:
        videos.setdefault(ref.patient_id, []).append(ref)
    current: dict[Path, tuple[np.ndarray, dict]] = {}  # the video being read (sources come video by video)

    def frame(index: int, path: Path, traced_refs: list) -> tuple[Volume, Volume | None]:
        if path not in current:
            current.clear()
            tracings = {int(c.metadata["frame"]): c.labels for c in (r.load() for r in traced_refs)}
            current[path] = (read_video(path), tracings)
        frames, tracings = current[path]
        if index >= len(frames):
            raise InputError(f"frame {index} is beyond the end of the video ({len(frames)} frames)")
        return Volume.from_2d(frames[index]), tracings.get(index)

    sources = []
    for video, traced_refs in videos.items():
        path = traced_refs[0].sources[0]
        sources += [
            TranslationSource(
                f"{video}_f{index:04d}",
                ".nii.gz",
                f"{path} (frame {index})",
                lambda i=index, p=path, t=traced_refs: frame(i, p, t),
                video,
            )
            for index in range(frame_count(path))
        ]
    return sources


def translate_files(
    generator: Generator,
    sources: Sequence[TranslationSource],
    out_dir: str | Path,
    *,
    segment: Callable[[Volume], Volume] | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    inputs: Sequence[Path] = (),
    slices: bool = False,
    steady: float = STEADY_FRAMES,
) -> list[TranslationOutput]:
    """Translate every source (group k, in order of first appearance, uses seed + k: every source its own
    seed unless grouped, like the frames of a video); ``segment``: image -> canonical label map on its
    grid (e.g. ``Segmenter.segment``); ``inputs``: the files read, never overwritten. The report gives, per
    group of several frames, the mean absolute change between consecutive frames of the sources and of
    the translations (grey levels 0..255). ``slices``: a 3D volume is translated slice by slice (its k
    slices, one seed for the volume; slices without a heart structure stay black); without it a 3D volume
    is an InputError. ``steady``: the frames of a video (a group of 2D sources in a row) are held steady
    over this many frames (``steady_look``; 0: each frame as translated)."""
    groups: dict[str, int] = {}
    for index, source in enumerate(sources):
        groups.setdefault(source.group or f"#{index}", len(groups))
    seeds = [seed + groups[s.group or f"#{i}"] for i, s in enumerate(sources)]
    check_seed(seed, len(groups))
    out_dir = Path(out_dir)
    names = [(f"{s.stem}_translated{s.suffix}", f"{s.stem}_translated_labels.seg.nrrd") for s in sources]
    seen: dict[str, str] = {}
    for source, (image_name, _) in zip(sources, names, strict=True):
        if image_name in seen:
            raise InputError(f"{seen[image_name]} and {source.origin} would both write {image_name}")
        seen[image_name] = source.origin
    finals = [n for pair in names for n in pair] + [REPORT]
    check_new_files(out_dir, finals, inputs)  # before any work: nothing is replaced
    prepared = []
    change = _FrameChange()
    for source in sources:
        try:
            image, given = source.load()
            if not (slices or image.is_2d):
                raise InputError(
                    f"a {'x'.join(map(str, image.size))} volume; translation takes 2D images (one frame), "
                    "or a 3D volume slice by slice (--slices)"
                )
            if given is None and segment is None:
                raise InputError("no label map: give --labels or --segment")
            prepared.append(_prepare_planes(generator, image, given, segment))
            if source.group:
                change.add(source.group, "source", image.array)
        except InputError as error:
            message = str(error)
            raise InputError(message if source.origin in message else f"{source.origin}: {message}") from None
    outputs: list[TranslationOutput] = []
    with new_files(out_dir, finals, inputs) as staged:
        for run in _runs(sources):  # a video's frames together (held steady), other sources one by one
            frames = []
            for index in run:
                image, maps, _, _ = prepared[index]
                planes = [
                    np.zeros(plane.array.shape, np.uint8)
                    if m is None
                    else _translated(generator, plane, m, seeds[index])
                    for m, plane in maps
                ]
                frames.append(np.concatenate(planes).astype(np.uint8))
            if len(run) > 1 and steady > 0:
                frames = steady_look([prepared[i][0].array for i in run], frames, steady)
            for index, frame in zip(run, frames, strict=True):
                source, (image, _, labels_map, structures) = sources[index], prepared[index]
                image_name, labels_name = names[index]
                translated = image.with_array(frame)
                if source.group:
                    change.add(source.group, "translated", translated.array)
                written_image = staged.final(write_image(translated, staged.path(image_name)))
                written_labels = staged.final(write_label_map(labels_map, staged.path(labels_name)))
                outputs.append(TranslationOutput(source.origin, written_image, written_labels, structures))
                if progress is not None:
                    progress(len(outputs) / len(sources), source.stem)
        report = {
            "generator": generator.description,
            "seed": seed,
            "images": [
                {
                    "source": o.source,
                    "image": o.image.name,
                    "labels": o.labels.name,
                    "structures": o.structures,
                    "seed": seeds[i],
                }
                for i, o in enumerate(outputs)
            ],
        }
        if change.pairs:
            report["frame_to_frame_change"] = change.report()
            report["steady_frames"] = "video" if math.isinf(steady) else steady
        staged.path(REPORT).write_text(json.dumps(report, indent=1))
    return outputs


def _runs(sources: Sequence[TranslationSource]) -> list[list[int]]:
    """The sources' indices in order, the consecutive frames of one group (a video) as one run."""
    runs: list[list[int]] = []
    for index, source in enumerate(sources):
        if runs and source.group and sources[runs[-1][0]].group == source.group:
            runs[-1].append(index)
        else:
            runs.append([index])
    return runs


def steady_look(
    sources: Sequence[np.ndarray], translated: Sequence[np.ndarray], frames: float = math.inf
) -> list[np.ndarray]:
    """The translated frames of one video in one look: each frame is its source plus the translation's
    difference from its source, smoothed over time, so the output moves with the source (its anatomy and
    speckle, frame by frame) while the look the model gives it does not flicker. ``frames``: the smoothing
    (a Gaussian of that many frames, the ends repeated; SciPy's ``gaussian_filter1d``), or infinite: the
    difference averaged over the whole video (one look; the output then changes from frame to frame
    exactly as its source does)."""
    from scipy.ndimage import gaussian_filter1d

    source = np.stack([np.asarray(a, np.float32) for a in sources])
    change = np.stack([np.asarray(a, np.float32) for a in translated]) - source
    if math.isinf(frames):
        held = source + change.mean(axis=0, keepdims=True)
    else:
        held = source + gaussian_filter1d(change, frames, axis=0, mode="nearest")
    return list(np.clip(np.rint(held), 0, 255).astype(np.uint8))


def _prepare_planes(
    generator: Generator, image: Volume, given: Volume | None, segment: Callable[[Volume], Volume] | None
) -> tuple[Volume, list[tuple[Volume | None, Volume]], Volume, dict[str, str]]:
    """(image, (the prepared map of each plane, or None for a plane without heart, and the plane's image),
    the guide map on the image's grid, structure -> source) of a 2D image or, plane by plane (its k
    slices), a 3D one."""
    count = 1 if image.is_2d else image.size[2]
    maps: list[tuple[Volume | None, Volume]] = []
    guides, found = [], {}
    for k in range(count):
        plane = image if image.is_2d else slice_of(image, k)
        labels = given if given is None or given.is_2d else slice_of(given, k)
        merged, structures = merge_labels(labels, segment(plane) if segment is not None else None)
        guides.append(merged.array)
        for name, where in structures.items():
            if found.get(name, ABSENT) == ABSENT or where == FROM_LABELS:
                found[name] = where
        heart = np.isin(merged.array, [s.label for s in HEART]).any()
        maps.append((generator.prepare(merged) if heart or image.is_2d else None, plane))
    if all(m is None for m, _ in maps):
        raise InputError("the label map is empty: no heart structure in any slice")
    return image, maps, image.with_array(np.concatenate(guides).astype(np.uint8)), found


def _translated(generator: Generator, image: Volume, labels: Volume, seed: int) -> np.ndarray:
    """One plane translated: through the generator's ``translate`` (image + map) where it has one (a
    model that can be guided by the source image), else its label-guided ``generate``."""
    if hasattr(generator, "translate"):
        return generator.translate(image, labels, seed).array
    return generator.generate(labels, 1, seed)[0].array


class _FrameChange:
    """The mean absolute change between consecutive frames of each group (a video), of the sources and of
    the translations, frames added in order."""

    def __init__(self) -> None:
        self.pairs: dict[str, dict[str, list[float]]] = {}
        self.last: dict[tuple[str, str], np.ndarray] = {}

    def add(self, group: str, kind: str, array: np.ndarray) -> None:
        """The next frame of ``group``; ``kind``: 'source' or 'translated'."""
        current = array.astype(np.float32)
        previous = self.last.get((group, kind))
        if previous is not None and previous.shape == current.shape:
            changes = self.pairs.setdefault(group, {"source": [], "translated": []})
            changes[kind].append(float(np.abs(current - previous).mean()))
        self.last[(group, kind)] = current

    def report(self) -> dict[str, dict[str, float]]:
        """group -> mean change of the sources and of the translations, and the number of frame pairs."""
        return {
            group: {
                "source": float(np.mean(changes["source"])),
                "translated": float(np.mean(changes["translated"])),
                "frame_pairs": len(changes["source"]),
            }
            for group, changes in self.pairs.items()
        }
