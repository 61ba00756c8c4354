"""Reading and writing images (SimpleITK) and Slicer segmentations (slicerio), keeping geometry exactly.

Formats: NIfTI (.nii, .nii.gz), NRRD (.nrrd), MetaImage (.mha, .mhd + .raw) and PNG. 2D files become
single-slice volumes; single-slice volumes are written as 3D files (exact geometry) except to PNG, which
holds one 2D slice and its pixel spacing but no origin or direction. ``.seg.nrrd`` files are Slicer
segmentations: segment names and colours survive a round trip. Every write is atomic.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from EchoSynthLib.data.atomic import staged_files, write_atomically
from EchoSynthLib.data.integrity import check_complete
from EchoSynthLib.data.labels import (
    ECHOSYNTH,
    LabelSchema,
    Structure,
    check_label_values,
    structure_for_segment_name,
)
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png")
SEGMENTATION_SUFFIX = ".seg.nrrd"
_PNG_DTYPES = (np.uint8, np.uint16)
# Longest first, so ".seg.nrrd" wins over ".nrrd".
_SUFFIXES_LONGEST_FIRST = tuple(sorted((SEGMENTATION_SUFFIX, *IMAGE_SUFFIXES), key=len, reverse=True))


def file_kind(path: str | os.PathLike) -> str:
    """'segmentation' for .seg.nrrd, 'image' for the image formats; an InputError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(SEGMENTATION_SUFFIX):
        return "segmentation"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    raise InputError(
        f"{path}: unsupported file type (use one of {', '.join((SEGMENTATION_SUFFIX, *IMAGE_SUFFIXES))})"
    )


def full_suffix(path: str | os.PathLike) -> str:
    """The readable suffix as written in the name ('.nii.gz', '.seg.nrrd', '.PNG'...), or '' if none."""
    name = Path(path).name
    suffix = next((s for s in _SUFFIXES_LONGEST_FIRST if name.lower().endswith(s)), "")
    return name[len(name) - len(suffix) :] if suffix else ""


def stem_of(path: str | os.PathLike) -> str:
    """The file name without its readable suffix."""
    name = Path(path).name
    return name[: len(name) - len(full_suffix(path))]


def readable_files(folder: str | os.PathLike) -> list[Path]:
    """The files of ``folder`` (not recursive, no hidden files) that this module reads, sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and full_suffix(p) and not p.name.startswith(".")
    )


def find_label_files(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Label files named by ``inputs``: files as given, folders expanded to their supported files."""
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            found = readable_files(item)
            if not found:
                raise InputError(f"{item}: no label files (.seg.nrrd, {', '.join(IMAGE_SUFFIXES)}) in folder")
            files.extend(found)
        elif not item.exists():
            raise InputError(f"{item}: no such file or folder")
        else:
            file_kind(item)
            files.append(item)
    if not files:
        raise InputError("no label files given")
    return files


def with_data_files(*paths: Path) -> tuple[Path, ...]:
    """The paths plus the data file each MetaImage ``.mhd`` header names (``.raw``/``.zraw``), if present."""
    out: list[Path] = []
    for path in paths:
        out.append(path)
        if path.name.lower().endswith(".mhd") and path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "ElementDataFile":
                    data = path.parent / value.strip()
                    if value.strip() and data.is_file() and data not in out:
                        out.append(data)
    return tuple(out)


def _require_file(path: Path) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a file")


def read_image(path: str | os.PathLike) -> Volume:
    """Read an image file into a Volume (2D files become single-slice volumes)."""
    path = Path(path)
    file_kind(path)
    _require_file(path)
    check_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"{path}: cannot be read as an image ({_error_summary(error)})") from None
    if image.GetNumberOfComponentsPerPixel() in (3, 4):
        image = _luminance(image)
    elif image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per pixel; expected 1"
        )
    dimension = image.GetDimension()
    array = sitk.GetArrayFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(f"{path}: the image contains NaN or infinite values")
    if dimension == 2:
        direction2 = np.array(image.GetDirection()).reshape(2, 2)
        direction = np.eye(3)
        direction[:2, :2] = direction2
        return Volume(
            array[np.newaxis], (*image.GetSpacing(), 1.0), (*image.GetOrigin(), 0.0), direction.ravel()
        )
    if dimension == 3:
        return Volume(array, image.GetSpacing(), image.GetOrigin(), image.GetDirection())
    raise InputError(f"{path}: has {dimension} dimensions; expected a 2D or 3D image")


def _luminance(image: sitk.Image) -> sitk.Image:
    """Grey levels from an RGB(A) image (ITU-R BT.601 weights), keeping geometry."""
    rgb = sitk.GetArrayFromImage(image).astype(np.float64)[..., :3]
    grey = np.rint(rgb @ np.array([0.299, 0.587, 0.114])).astype(sitk.GetArrayViewFromImage(image).dtype)
    out = sitk.GetImageFromArray(grey)
    out.CopyInformation(image)
    return out


def to_sitk(volume: Volume, as_2d: bool = False) -> sitk.Image:
    """The volume as a SimpleITK image (3D, or its single slice as 2D), geometry included."""
    if as_2d:
        image = sitk.GetImageFromArray(volume.array[0])
        image.SetSpacing(volume.spacing[:2])
        image.SetOrigin(volume.origin[:2])
        image.SetDirection(volume.direction_matrix[:2, :2].ravel().tolist())
        return image
    image = sitk.GetImageFromArray(volume.array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction)
    return image


def write_image(volume: Volume, path: str | os.PathLike) -> Path:
    """Write a Volume; the format follows the file extension. Returns the path written."""
    path = Path(path)
    if file_kind(path) != "image":
        raise InputError(f"{path}: use write_segmentation for .seg.nrrd files")
    if np.issubdtype(volume.array.dtype, np.floating) and not np.all(np.isfinite(volume.array)):
        raise InputError(f"{path}: refusing to write an image that contains NaN or infinite values")
    is_png = path.name.lower().endswith(".png")
    if is_png and (not volume.is_2d or volume.array.dtype not in _PNG_DTYPES):
        raise InputError(
            f"{path}: PNG holds one 8- or 16-bit slice; "
            f"got {volume.array.shape[0]} slice(s) of {volume.array.dtype}"
        )
    image = to_sitk(volume, as_2d=is_png)
    compress = not is_png
    if path.name.lower().endswith(".mhd"):
        return _write_metaimage_pair(image, path, compress)
    return write_atomically(path, lambda tmp: sitk.WriteImage(image, str(tmp), useCompression=compress))


def _write_metaimage_pair(image: sitk.Image, path: Path, compress: bool) -> Path:
    """A .mhd header names its data file, so both are written under their final names in a staging
    folder and moved in together, the header last (the header appearing is the commit)."""
    with staged_files(path.parent) as staged:
        sitk.WriteImage(image, str(staged.path(path.name)), useCompression=compress)
    return path


@dataclass(frozen=True)
class Segment:
    """One segment of a label map: its label value, name and colour."""

    value: int
    name: str
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)


def read_segmentation(path: str | os.PathLike) -> tuple[Volume, list[Segment]]:
    """Read a Slicer ``.seg.nrrd`` into a label Volume and its segments (names, values, colours)."""
    import slicerio

    path = Path(path)
    if file_kind(path) != "segmentation":
        raise InputError(f"{path}: not a Slicer segmentation (.seg.nrrd)")
    _require_file(path)
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # slicerio/pynrrd raise many types for corrupt files
        raise InputError(
            f"{path}: cannot be read as a Slicer segmentation ({_error_summary(error)})"
        ) from None
    voxels = np.asarray(segmentation["voxels"])
    if voxels.ndim == 4:
        raise InputError(
            f"{path}: has overlapping segments ({voxels.shape[0]} layers), which cannot form one label map"
        )
    if voxels.ndim != 3:
        raise InputError(f"{path}: segmentation voxels have {voxels.ndim} axes; expected 3")
    # slicerio gives voxels in (i, j, k) order; Volume arrays are (k, j, i).
    labels = Volume.from_ijk_to_lps(np.ascontiguousarray(voxels.transpose(2, 1, 0)), segmentation["ijkToLPS"])
    segments = [
        Segment(
            int(s["labelValue"]), str(s.get("name", s.get("id", ""))), tuple(s.get("color", (0.5, 0.5, 0.5)))
        )
        for s in segmentation.get("segments", [])
    ]
    return labels, segments


def write_segmentation(labels: Volume, segments: list[Segment], path: str | os.PathLike) -> Path:
    """Write a label Volume with named segments as a Slicer ``.seg.nrrd``."""
    import slicerio

    path = Path(path)
    if file_kind(path) != "segmentation":
        raise InputError(f"{path}: segmentations are written as .seg.nrrd")
    check_label_values(labels.array, [0] + [s.value for s in segments], "segments given")
    if 0 in {s.value for s in segments}:
        raise InputError("segment label value 0 is reserved for 'no segment'")
    voxels = np.ascontiguousarray(labels.array.transpose(2, 1, 0)).astype(np.uint8)
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": labels.ijk_to_lps(),
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "referenceImageExtentOffset": [0, 0, 0],
        "conversionParameters": [_reference_geometry(labels)],
        "segments": [
            {
                "id": f"Segment_{segment.value}",
                "name": segment.name,
                "labelValue": segment.value,
                "layer": 0,
                "color": list(segment.color),
            }
            for segment in segments
        ],
    }
    return write_atomically(path, lambda tmp: slicerio.write_segmentation(str(tmp), segmentation))


def _reference_geometry(labels: Volume) -> dict[str, str]:
    """Slicer's "Reference image geometry" parameter (IJK-to-RAS row by row, then the extent), so that
    Slicer keeps the file's whole grid as the segmentation's geometry rather than its segments' extent."""
    ijk_to_ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ labels.ijk_to_lps()
    extent = [v for size in labels.size for v in (0, size - 1)]
    value = ";".join(f"{v:.17g}" for v in [*ijk_to_ras.ravel(), *extent]) + ";"
    return {
        "name": "Reference image geometry",
        "value": value,
        "description": "Image geometry description string determining the geometry of the labelmap",
    }


def read_label_map(path: str | os.PathLike, schema: LabelSchema = ECHOSYNTH) -> Volume:
    """Read labels as a canonical label map: segments are matched by name, label images by ``schema``."""
    if file_kind(path) == "segmentation":
        labels, segments = read_segmentation(path)
        canonical = np.zeros(labels.array.shape, dtype=np.uint8)
        check_label_values(labels.array, [0] + [s.value for s in segments], f"segments of {Path(path).name}")
        for segment in segments:
            canonical[labels.array == segment.value] = structure_for_segment_name(segment.name).label
        return labels.with_array(canonical)
    labels = read_image(path)
    return labels.with_array(schema.to_canonical(labels.array))


def write_label_map(labels: Volume, path: str | os.PathLike) -> Path:
    """Write a canonical label map: as named segments for .seg.nrrd, as label values otherwise."""
    values = check_label_values(labels.array, [s.label for s in Structure], ECHOSYNTH.name)
    if file_kind(path) == "segmentation":
        present = [ECHOSYNTH.values[int(v)] for v in values if v != 0]
        segments = [Segment(s.label, s.display_name, s.color) for s in present]
        return write_segmentation(labels.with_array(labels.array.astype(np.uint8)), segments, path)
    return write_image(labels.with_array(labels.array.astype(np.uint8)), path)


def _error_summary(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[-1].strip() if text else type(error).__name__
