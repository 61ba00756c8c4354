"""Is an image file complete? Checks SimpleITK does not make, done before it reads the file.

SimpleITK's NIfTI reader fills the missing part of a truncated ``.nii`` / ``.nii.gz`` with zeros and turns
NaN and infinite voxels into 0, and its MetaImage reader reports a truncated ``.mha`` as "No such file or
directory" after printing to stderr. So the voxel data these headers promise is counted here, and float
NIfTI data is checked for non-finite values, with messages naming the file. Written by hand: the headers
are a few fixed fields (NIfTI-1/2 binary, MetaImage text), and nibabel is not a dependency of EchoSynth or
part of Slicer's Python. NRRD and PNG readers already fail on truncated data.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from EchoSynthLib.errors import InputError

# NIfTI datatype code -> numpy dtype (the codes of nifti1.h).
_NIFTI_DTYPES = {
    2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8",
    128: "u1", 2304: "u1",  # RGB24, RGBA32: bytes
}  # fmt: skip
# MetaImage ElementType -> bytes per element.
_MET_SIZES = {
    "MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
    "MET_ULONG": 8, "MET_LONG": 8, "MET_ULONG_LONG": 8, "MET_LONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip


def _truncated(path: Path, expected: int, found: int) -> InputError:
    return InputError(
        f"{path}: cannot be read as an image: the file is truncated (its header describes {expected} "
        f"bytes of voxel data, the file holds {found})"
    )


def _nifti_bytes(path: Path) -> bytes:
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as stream:
                return stream.read()
        except (EOFError, OSError, zlib.error) as error:
            reason = f"truncated or not gzip data ({error})"
            raise InputError(f"{path}: cannot be read as an image: {reason}") from None
    return path.read_bytes()


def check_nifti(path: Path) -> None:
    """InputError if a NIfTI file holds less voxel data than its header says, or non-finite floats."""
    data = _nifti_bytes(path)
    if len(data) < 348:
        raise InputError(f"{path}: cannot be read as an image: too short for a NIfTI header")
    for endian in "<>":
        size = struct.unpack_from(f"{endian}i", data, 0)[0]
        if size in (348, 540):
            break
    else:
        return  # not a NIfTI header we know: leave the verdict to SimpleITK
    if size == 348:
        dims = struct.unpack_from(f"{endian}8h", data, 40)
        datatype, bitpix = struct.unpack_from(f"{endian}2h", data, 70)
        offset = int(struct.unpack_from(f"{endian}f", data, 108)[0])
    else:
        if len(data) < 540:
            raise InputError(f"{path}: cannot be read as an image: too short for a NIfTI-2 header")
        datatype, bitpix = struct.unpack_from(f"{endian}2h", data, 12)
        dims = struct.unpack_from(f"{endian}8q", data, 16)
        offset = struct.unpack_from(f"{endian}q", data, 168)[0]
    rank = dims[0]
    if not 1 <= rank <= 7 or any(d < 1 for d in dims[1 : rank + 1]):
        raise InputError(f"{path}: cannot be read as an image: impossible dimensions {dims[1 : rank + 1]}")
    count = math.prod(dims[1 : rank + 1])
    expected = count * bitpix // 8
    found = len(data) - offset
    if found < expected:
        raise _truncated(path, expected, max(found, 0))
    if datatype in (16, 64):  # float32, float64
        voxels = np.frombuffer(data, np.dtype(endian + _NIFTI_DTYPES[datatype]), count, offset)
        if not np.isfinite(voxels).all():
            raise InputError(f"{path}: the image contains NaN or infinite values")


def _metaimage_header(path: Path) -> tuple[dict[str, str], int]:
    """The key = value pairs of a MetaImage header and the header's length in bytes."""
    fields: dict[str, str] = {}
    length = 0
    with path.open("rb") as stream:
        for raw in stream:
            length += len(raw)
            key, sep, value = raw.decode("latin-1").partition("=")
            if not sep:
                break
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                break
    return fields, length


def check_metaimage(path: Path) -> None:
    """InputError if a MetaImage (.mha, .mhd + data file) holds less voxel data than its header says."""
    fields, header = _metaimage_header(path)
    try:
        dims = [int(v) for v in fields["DimSize"].split()]
        element = _MET_SIZES[fields["ElementType"]] * int(fields.get("ElementNumberOfChannels", "1"))
        source = fields["ElementDataFile"]
    except (KeyError, ValueError):
        return  # unusual header (lists, per-slice files): leave the verdict to SimpleITK
    if source == "LOCAL":
        found = path.stat().st_size - header
    else:
        data = path.parent / source
        if not data.is_file():
            raise InputError(f"{path}: its data file {data} is missing")
        found = data.stat().st_size
    if fields.get("CompressedData", "False").lower() == "true":
        expected = int(fields.get("CompressedDataSize", "0") or 0)  # what the compressed stream holds
    else:
        expected = math.prod(dims) * element
    if found < expected:
        raise _truncated(path, expected, max(found, 0))


def check_complete(path: Path) -> None:
    """The checks that apply to ``path``'s format (NIfTI, MetaImage); nothing for other formats."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        check_nifti(path)
    elif name.endswith((".mha", ".mhd")):
        check_metaimage(path)
