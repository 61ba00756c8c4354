"""One case to training arrays: sector class added, fixed grid, intensities in [-1, 1], the method's classes.

Order matters: the sector is found on the source image at full resolution and added to the label map as
a class (where the map is background), intensities go to [0, 1] (so padding is black), both are
resampled onto the target grid, then intensities map to [-1, 1] and labels to the chosen class layout.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from EchoSynthLib.data.cases import Case
from EchoSynthLib.data.labels import LabelSchema, Structure, schema_named
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.preprocessing.resample import RESIZE_MODES, Grid, resample, target_grid
from EchoSynthLib.preprocessing.sector_mask import sector_mask_from_image

# Class layouts the methods train on: label schemas (their values are the classes).
LAYOUTS = ("echosynth", "echo-from-noise", "camus", "mitea", "echonet")


@dataclass(frozen=True)
class PrepareSettings:
    """How cases become training arrays; stored in the cache manifest."""

    size: tuple[int, ...] = (128, 128)
    resize: str = "pad"
    upscale: bool = True
    layout: str = "echosynth"
    split_fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    split_seed: int = 0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise InputError(f"unknown resize mode '{self.resize}' (use {' or '.join(RESIZE_MODES)})")
        if self.layout not in LAYOUTS:
            raise InputError(f"unknown class layout '{self.layout}' (known: {', '.join(LAYOUTS)})")
        if len(self.size) not in (2, 3) or any(int(n) < 8 for n in self.size):
            raise InputError(f"--size needs 2 (2D) or 3 (3D) sides of at least 8 voxels, got {self.size}")

    @property
    def schema(self) -> LabelSchema:
        """The label schema of the cached label maps."""
        return schema_named(self.layout)

    @classmethod
    def from_manifest(cls, values: dict[str, Any]) -> PrepareSettings:
        """The settings a cache manifest stores (``as_dict``)."""
        return cls(**{**values, "size": tuple(values["size"])})

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what the manifest stores and compares)."""
        values = asdict(self)
        values["size"] = list(self.size)
        return values


@dataclass(frozen=True, eq=False)
class PreparedCase:
    """Training arrays of one case: image float32 in [-1, 1] and labels uint8, shape (rows, cols) or 3D."""

    case_id: str
    patient_id: str
    image: np.ndarray
    labels: np.ndarray
    metadata: dict[str, Any]


def unit_intensities(array: np.ndarray) -> np.ndarray:
    """Intensities in [0, 1]: 8-bit images by their full range 0..255, anything else by its own min..max."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    values = array.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        raise InputError("the image is constant (no signal)")
    return (values - np.float32(low)) / np.float32(high - low)


def with_sector_class(case: Case) -> np.ndarray:
    """The canonical label map with the image's sector added as the SECTOR class (where it is background)."""
    sector = sector_mask_from_image(case.image)
    labels = case.labels.array.astype(np.uint8, copy=True)
    labels[(labels == Structure.BACKGROUND.label) & sector] = Structure.SECTOR.label
    return labels


def image_on_grid(image: Volume, grid: Grid) -> np.ndarray:
    """An image's intensities on ``grid`` as float32 in [-1, 1] (``unit_intensities``, then resampled)."""
    resampled = resample(image.with_array(unit_intensities(image.array)), grid, labels=False)
    return np.clip(resampled.array * np.float32(2.0) - np.float32(1.0), -1.0, 1.0).astype(np.float32)


def prepare_case(case: Case, settings: PrepareSettings) -> PreparedCase:
    """The training arrays of ``case`` (see the module docstring); the case itself is not modified."""
    if case.image.is_2d != (len(settings.size) == 2):
        raise InputError(
            f"{case.case_id}: a {'2D' if case.image.is_2d else '3D'} case cannot be prepared at "
            f"--size {'x'.join(map(str, settings.size))}"
        )
    labels = with_sector_class(case)
    heart = [Structure.LV_CAVITY.label, Structure.LV_MYOCARDIUM.label, Structure.LEFT_ATRIUM.label]
    if not np.isin(labels, heart).any():
        raise InputError(f"{case.case_id}: the label map has no heart structure (empty map)")
    grid = target_grid(case.image, tuple(settings.size), settings.resize, settings.upscale)
    image_array = image_on_grid(case.image, grid)
    label_map = resample(case.labels.with_array(labels), grid, labels=True)
    label_array = settings.schema.from_canonical(label_map.array)
    if image_array.shape[0] == 1:
        image_array, label_array = image_array[0], label_array[0]
    metadata = {
        **case.metadata,
        "source_grid": Grid.of(case.image).as_dict(),
        "grid": grid.as_dict(),
    }
    return PreparedCase(case.case_id, case.patient_id, image_array, label_array, metadata)
