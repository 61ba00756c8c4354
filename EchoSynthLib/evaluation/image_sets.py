"""Sets of images to evaluate, on one grid: a cache split, or a folder of image files with their label maps.

Everything is brought onto the real cache's grid by the cache's own preparation (``prepare_case`` with the
cache's settings: same resizing, sector class, intensities in [-1, 1]), so a synthetic set written on the
label maps' geometry is compared with the real set pixel for pixel. Labels are kept as canonical values.

A folder pairs each image with its label map by name, as ``echosynth synthesize`` and the demo write them:
``NAME_synthKK.ext`` -> ``NAME.*`` (``NAME_augAA`` for augmented anatomies), ``NAME_image.ext`` or
``NAME.ext`` (``echosynth translate``'s ``x_translated``) -> ``NAME_labels.*``, or the same name in the
``labels`` folder. Files named as label maps (``*_labels``, ``*_augAA``, ``.seg.nrrd``) are not images.
Paired sources (``--paired-with``) are matched by name: ``x_synthKK`` and ``x_translated`` to ``x``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.data.cases import SPLITS, Case
from EchoSynthLib.data.io import file_kind, read_image, read_label_map, readable_files, stem_of
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.prepare import PrepareSettings, image_on_grid, prepare_case
from EchoSynthLib.preprocessing.resample import target_grid

_LABEL_NAME = re.compile(r"(_labels|_aug\d+)$")
_SYNTH_NAME = re.compile(r"_synth\d+$")
# What follows the source's name in a synthetic or translated image's name.
_SOURCE_SUFFIX = re.compile(r"(_synth\d+|_translated)$")


@dataclass
class ImageSet:
    """Images (N, H, W) or (N, D, H, W) float32 in [-1, 1] on one grid, their canonical label maps (or None
    when not every image has one), names, and the files they came from."""

    description: str
    images: np.ndarray
    labels: np.ndarray | None
    names: list[str]
    files: list[Path] = field(default_factory=list)

    @property
    def spatial_dims(self) -> int:
        return self.images.ndim - 1

    def fingerprint(self) -> str:
        """SHA-256 of the arrays: features computed for one set are reused for the same set only."""
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(repr(self.images.shape).encode())
        return digest.hexdigest()[:16]


def split_spec(spec: str | Path, default: str) -> tuple[Path, str]:
    """``CACHE[:split]`` -> (path, split)."""
    text = str(spec)
    path, sep, split = text.rpartition(":")
    if sep and path and not Path(text).exists():
        if split not in SPLITS:
            raise InputError(f"{text}: unknown split '{split}' (known: {', '.join(SPLITS)})")
        return Path(path), split
    return Path(text), default


def cache_set(spec: str | Path, default_split: str) -> tuple[ImageSet, CacheIndex]:
    """A split of a cache (``CACHE[:split]``) as a set, with the opened cache."""
    path, split = split_spec(spec, default_split)
    cache = CacheIndex.open(path)
    entries = cache.cases(split)
    if not entries:
        raise InputError(f"{path}: the {split} split has no case")
    images, labels = zip(*(cache.load(e) for e in entries), strict=True)
    layout = cache.manifest.layout
    canonical = np.stack([layout.to_canonical(lab) for lab in labels])
    names = [e["case_id"] for e in entries]
    files = [cache.path / e["file"] for e in entries]
    return ImageSet(f"{path}:{split}", np.stack(images).astype(np.float32), canonical, names, files), cache


def _label_for(image: Path, labels_by_stem: dict[str, Path]) -> Path | None:
    stem = stem_of(image)
    candidates = [_SYNTH_NAME.sub("", stem), re.sub(r"_image$", "_labels", stem), f"{stem}_labels", stem]
    return next((labels_by_stem[c] for c in candidates if c in labels_by_stem), None)


def folder_set(
    folder: str | Path, settings: PrepareSettings, labels_folder: str | Path | None = None
) -> ImageSet:
    """The images of ``folder`` prepared onto the grid of ``settings`` (the real cache's preparation)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = readable_files(folder)
    label_files = [p for p in files if file_kind(p) == "segmentation" or _LABEL_NAME.search(stem_of(p))]
    image_files = [p for p in files if p not in label_files]
    if not image_files:
        raise InputError(f"{folder}: no image files to evaluate")
    labels_by_stem = {stem_of(p): p for p in label_files}
    if labels_folder is not None:
        if not Path(labels_folder).is_dir():
            raise InputError(f"{labels_folder}: no such folder")
        labels_by_stem |= {stem_of(p): p for p in readable_files(labels_folder)}
    pairs = [(image, _label_for(image, labels_by_stem)) for image in image_files]
    labelled = all(label is not None for _, label in pairs)
    images, label_maps = [], []
    for image_path, label_path in pairs:
        try:
            image = read_image(image_path)
            if labelled:
                case = Case(stem_of(image_path), stem_of(image_path), image, read_label_map(label_path))
                prepared = prepare_case(case, settings)
                images.append(prepared.image)
                label_maps.append(settings.schema.to_canonical(prepared.labels))
            else:
                images.append(unlabelled_image(image, settings))
        except InputError as error:
            message = str(error)
            raise InputError(message if str(image_path) in message else f"{image_path}: {message}") from None
    shapes = {a.shape for a in images}
    if len(shapes) != 1:
        raise InputError(f"{folder}: images do not share one grid after preparation ({sorted(shapes)})")
    return ImageSet(
        str(folder),
        np.stack(images).astype(np.float32),
        np.stack(label_maps) if labelled else None,
        [stem_of(p) for p in image_files],
        image_files,
    )


def unlabelled_image(image, settings: PrepareSettings) -> np.ndarray:
    """An unlabelled image on the settings' grid, intensities in [-1, 1] (as ``prepare_case`` makes them)."""
    if image.is_2d != (len(settings.size) == 2):
        raise InputError(
            f"a {'2D' if image.is_2d else '3D'} image cannot be compared with {settings.size} sets"
        )
    array = image_on_grid(image, target_grid(image, tuple(settings.size), settings.resize, settings.upscale))
    return array[0] if array.shape[0] == 1 else array


def open_set(spec: str | Path, reference: CacheIndex, labels_folder: str | Path | None = None) -> ImageSet:
    """A folder (prepared like ``reference``'s cases) or a cache split (``CACHE[:split]``, default val)."""
    path, _ = split_spec(spec, "val")
    if (path / "manifest.json").is_file():
        found, cache = cache_set(spec, "val")
        if cache.manifest.shape != reference.manifest.shape:
            raise InputError(
                f"{path}: images of {list(cache.manifest.shape)} cannot be compared with "
                f"{list(reference.manifest.shape)} (prepare both at one --size)"
            )
        return found
    settings = PrepareSettings.from_manifest(reference.manifest.settings)
    return folder_set(path, settings, labels_folder)


def source_name(name: str) -> str:
    """The source image's name of a synthetic or translated image's (``x_synth00``, ``x_translated``: x)."""
    return _SOURCE_SUFFIX.sub("", name)


def paired_in_order(images: ImageSet, sources: ImageSet) -> np.ndarray:
    """The source image of each image, in the images' order, matched by name (``source_name``); an
    InputError names the first image without its source."""
    by_name = {name: index for index, name in enumerate(sources.names)}
    order = []
    for name in images.names:
        index = by_name.get(source_name(name), by_name.get(name))
        if index is None:
            raise InputError(f"{name}: no source image named {source_name(name)} in {sources.description}")
        order.append(index)
    return sources.images[order]
