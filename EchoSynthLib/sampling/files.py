"""Synthesizing for label files: plan every name and read and check every input first, then write.

Outputs are written, as they are made, to a staging folder inside ``out_dir`` and are moved in only when
all are written, so a failed run leaves nothing behind and memory stays flat for any ``n``. Names:
``<stem>_synth<NN>.<ext>`` (the input's image format; ``.nrrd`` for ``.seg.nrrd`` inputs); with
``augment`` also ``<stem>_aug<KK><suffix>`` (new label maps, input format) and
``<stem>_aug<KK>_synth<NN>.<ext>``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from EchoSynthLib.checks import check_seed
from EchoSynthLib.data.io import file_kind, full_suffix, read_label_map, stem_of, write_image, write_label_map
from EchoSynthLib.data.labels import LabelSchema
from EchoSynthLib.data.outputs import WHOLE, check_new_files, new_files
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import Generator, generate_for_maps
from EchoSynthLib.inference.options import ACQUISITIONS

# Images generated (and held in memory) at a time: one batch across as many maps as it holds (a model
# draws them in one network call per step), or a part of one map's images.
CHUNK = 16


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


@dataclass
class _Segment:
    """Images first .. stop - 1 of one map (an input's, or an augmented anatomy's) in a run."""

    key: tuple[int, int]  # (input position, anatomy index)
    name: str
    files: list[str]
    labels: Volume
    base: int  # the run-wide number of the map's image 0
    first: int
    stop: int


def _chunks(first: int, stop: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, count) pairs covering ``first`` .. ``stop - 1`` in pieces of at most ``size``."""
    for start in range(first, stop, size):
        yield start, min(size, stop - start)


def shard_range(total: int, shard: tuple[int, int]) -> tuple[int, int]:
    """The contiguous part [lo, hi) of ``total`` items that shard ``K`` of ``N`` makes."""
    index, count = shard
    if not (isinstance(index, int) and isinstance(count, int) and 0 <= index < count):
        raise InputError(f"a shard is K/N with 0 <= K < N, got {index}/{count}")
    return index * total // count, (index + 1) * total // count


def _reporter(
    progress: Callable[[float, str], None] | None, offset: float, scale: float, total: int, name: str
) -> Callable[[float], None] | None:
    """A generator's progress(fraction) as the whole run's progress(fraction, name)."""
    if progress is None:
        return None
    return lambda fraction: progress((offset + scale * fraction) / total, name)


def planned_names(inputs: Sequence[Path], n: int, augment: int) -> dict[Path, list[tuple[str, list[str]]]]:
    """Per input: (map name, image file names) for the input's own map and each augmented anatomy.

    Two inputs whose outputs would share a name (``d1/x.nii.gz`` and ``d2/x.nii.gz``, ``a.seg.nrrd`` and
    ``a.nrrd``) are an InputError naming both."""
    plan: dict[Path, list[tuple[str, list[str]]]] = {}
    owner: dict[str, Path] = {}
    for path in inputs:
        stem, suffix = stem_of(path), _image_suffix(path)
        maps = [stem] + [f"{stem}_aug{index:02d}" for index in range(augment)]
        entries = [(name, [f"{name}_synth{k:02d}{suffix}" for k in range(n)]) for name in maps]
        for name in [f"{m}{full_suffix(path)}" for m in maps[1:]] + [f for _, fs in entries for f in fs]:
            if name in owner and owner[name] != path:
                raise InputError(
                    f"{owner[name]} and {path} would both write {name}; rename one or synthesize them apart"
                )
            owner[name] = path
        plan[Path(path)] = entries
    return plan


def _shard_maps(
    plan: dict[Path, list[tuple[str, list[str]]]],
    inputs: Sequence[Path],
    n: int,
    augment: int,
    part: tuple[int, int],
) -> Iterator[tuple[int, int, str, list[str], int, int, int]]:
    """(input position, anatomy index, map name, image files, base, first, stop) of each map with images
    in ``part`` (lo, hi) of the run's numbering: its images first .. stop - 1, base the run-wide number of
    its image 0 (image k uses seed + base + k)."""
    lo, hi = part
    for position, path in enumerate(inputs):
        for index, (name, files) in enumerate(plan[path]):
            base = (position * (1 + augment) + index) * n
            first, stop = max(lo - base, 0), min(hi - base, n)
            if first < stop:  # else: another shard's map
                yield position, index, name, files, base, first, stop


def _shard_names(
    plan: dict[Path, list[tuple[str, list[str]]]],
    inputs: Sequence[Path],
    n: int,
    augment: int,
    part: tuple[int, int],
) -> list[str]:
    """The file names a run (or its shard ``part``) writes: images, and new anatomies' label files."""
    names = []
    for position, index, name, files, _, first, stop in _shard_maps(plan, inputs, n, augment, part):
        if index > 0 and first == 0:
            names.append(f"{name}{full_suffix(inputs[position])}")
        names += files[first:stop]
    return names


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
    shard: tuple[int, int] = (0, 1),
    acquisition: str = ACQUISITIONS[0],
) -> list[SynthesisOutput]:
    """Images (and, with ``augment``, new label maps and their images) for every input label file.

    Each image is written to a staging folder as soon as it is made (at most ``CHUNK`` images are held in
    memory); everything moves into ``out_dir`` at the end. ``progress(fraction, name)`` follows the work
    done. Images are numbered across the run (maps in order, each map's images together, an augmented
    anatomy after its source map) and image i of the run uses seed + i, so every image of a run, one per
    map or many, starts from its own noise. ``shard`` (K, N) makes only the K-th of N contiguous parts of
    that numbering (an augmented map's label file goes with its image 0), so the shards together write
    exactly the files of one unsharded run. ``acquisition`` ('same' or 'varied') says how the new anatomies
    are seen: at the map's own depth and sector, or each in an acquisition of its own."""
    if n < 1 or augment < 0:
        raise InputError(f"n must be at least 1 and augment at least 0, got {n} and {augment}")
    inputs = [Path(p) for p in inputs]
    check_seed(seed, len(inputs) * (1 + augment) * n)
    plan = planned_names(inputs, n, augment)
    out_dir = Path(out_dir)
    lo, hi = shard_range(len(inputs) * (1 + augment) * n, shard)
    names = _shard_names(plan, inputs, n, augment, (lo, hi))
    check_new_files(out_dir, names, inputs)  # before any work: nothing is replaced
    maps = read_checked_maps(generator, inputs, schema)
    if augment:
        from EchoSynthLib.augmentation import augment_label_map, variant_seed
        from EchoSynthLib.augmentation.files import file_seed
        from EchoSynthLib.augmentation.labelmaps import ACQUISITIONS as AUGMENTATIONS

        augmentation = AUGMENTATIONS[acquisition]
    done, total = 0, max(hi - lo, 1)
    part = WHOLE if shard == (0, 1) else f"shard-{shard[0]}-of-{shard[1]}"
    images: dict[tuple[int, int], list[Path]] = {}  # (input, anatomy) -> its images, in run order
    labels_written: dict[tuple[int, int], Path] = {}
    group: list[_Segment] = []

    def draw_group() -> None:
        """The group's images in batches across its maps (at most CHUNK images held), written at once."""
        nonlocal done
        count = sum(s.stop - s.first for s in group)
        advance = _reporter(progress, done, count, total, group[-1].name)
        first = group[0].base + group[0].first  # the group's images are contiguous in the run
        drawn = generate_for_maps(
            generator, [s.labels for s in group], [s.stop - s.first for s in group], seed + first, advance
        )
        for segment, made in zip(group, drawn, strict=True):
            for k, image in enumerate(made):
                written = write_image(image, staged.path(segment.files[segment.first + k]))
                images[segment.key].append(staged.final(written))
        done += count
        group.clear()

    shard_maps = _shard_maps(plan, inputs, n, augment, (lo, hi))
    with new_files(out_dir, names, inputs, part) as staged:
        for position, index, name, files, base, first, stop in shard_maps:
            key, label_map = (position, index), maps[position]
            if index > 0:
                # Seeded by the file, as ``augment`` seeds it: every map's new anatomies (and their
                # acquisitions) their own, and the same as ``augment`` makes of that file.
                anatomy_seed = variant_seed(file_seed(seed, inputs[position]), index - 1)
                try:
                    label_map = augment_label_map(label_map, anatomy_seed, augmentation)
                except InputError as error:
                    raise InputError(f"{inputs[position]}: {error}") from None
                if first == 0:
                    path = staged.path(f"{name}{full_suffix(inputs[position])}")
                    labels_written[key] = staged.final(write_label_map(label_map, path))
            images[key] = []
            for start, count in _chunks(first, stop, CHUNK):
                if sum(s.stop - s.first for s in group) + count > CHUNK:
                    draw_group()
                group.append(_Segment(key, name, files, label_map, base, start, start + count))
        if group:
            draw_group()
    return [
        SynthesisOutput(inputs[key[0]], plan[inputs[key[0]]][key[1]][0], tuple(made), labels_written.get(key))
        for key, made in images.items()
    ]
