"""Label schema: named cardiac structures, the value maps of the public datasets, segment-name aliases.

Inside EchoSynth every label map uses the canonical values of ``ECHOSYNTH`` (0 background, 1 LV cavity,
2 LV myocardium, 3 left atrium, 4 ultrasound sector). Dataset schemas translate to and from it, and
Slicer segment names are matched case-insensitively against the aliases below.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from EchoSynthLib.errors import InputError, UnknownLabelError


class Structure(str, Enum):
    """A named structure; the value is its canonical name."""

    BACKGROUND = "background"
    LV_CAVITY = "lv_cavity"
    LV_MYOCARDIUM = "lv_myocardium"
    LEFT_ATRIUM = "left_atrium"
    SECTOR = "sector"

    @property
    def label(self) -> int:
        """Canonical label value."""
        return _CANONICAL_VALUE[self]

    @property
    def display_name(self) -> str:
        """Name used for Slicer segments and legends."""
        return _DISPLAY_NAME[self]

    @property
    def color(self) -> tuple[float, float, float]:
        """RGB colour in [0, 1] for segments and overlays."""
        return _COLOR[self]


_CANONICAL_VALUE = {
    Structure.BACKGROUND: 0,
    Structure.LV_CAVITY: 1,
    Structure.LV_MYOCARDIUM: 2,
    Structure.LEFT_ATRIUM: 3,
    Structure.SECTOR: 4,
}
_DISPLAY_NAME = {
    Structure.BACKGROUND: "Background",
    Structure.LV_CAVITY: "LV cavity",
    Structure.LV_MYOCARDIUM: "LV myocardium",
    Structure.LEFT_ATRIUM: "Left atrium",
    Structure.SECTOR: "Ultrasound sector",
}
_COLOR = {
    Structure.BACKGROUND: (0.0, 0.0, 0.0),
    Structure.LV_CAVITY: (0.90, 0.25, 0.20),
    Structure.LV_MYOCARDIUM: (0.30, 0.80, 0.35),
    Structure.LEFT_ATRIUM: (0.25, 0.45, 0.95),
    Structure.SECTOR: (0.55, 0.55, 0.55),
}

# Slicer segment names people actually use, normalised by _normalise_name (lower case, single spaces).
_ALIASES: dict[Structure, tuple[str, ...]] = {
    Structure.BACKGROUND: ("background", "bg", "outside"),
    Structure.LV_CAVITY: (
        "lv cavity",
        "lv",
        "left ventricle",
        "left ventricular cavity",
        "lv endo",
        "lv endocardium",
        "endocardium",
        "lv blood pool",
        "lv bloodpool",
        "cavity",
        "lv lumen",
        "lumen",
    ),
    Structure.LV_MYOCARDIUM: (
        "lv myocardium",
        "myo",
        "myocardium",
        "lv myo",
        "lv wall",
        "left ventricular myocardium",
        "lv muscle",
    ),
    Structure.LEFT_ATRIUM: ("left atrium", "la", "atrium", "left atrial cavity", "la cavity"),
    Structure.SECTOR: (
        "ultrasound sector",
        "sector",
        "cone",
        "us sector",
        "fov",
        "field of view",
        "scan sector",
    ),
}
_ALIAS_LOOKUP = {alias: structure for structure, aliases in _ALIASES.items() for alias in aliases}


def _normalise_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def structure_for_segment_name(name: str) -> Structure:
    """The structure a Slicer segment name stands for ("LV", "Left Ventricle", "MYO", "LA", ...)."""
    structure = _ALIAS_LOOKUP.get(_normalise_name(name))
    if structure is None:
        known = ", ".join(f'"{a}"' for a in sorted({s.display_name for s in Structure}))
        raise UnknownLabelError(f'segment "{name}" is not a known structure (known names include {known})')
    return structure


@dataclass(frozen=True)
class LabelSchema:
    """How one dataset writes label values: value -> structure."""

    name: str
    values: Mapping[int, Structure]

    def value_of(self, structure: Structure) -> int:
        """The value this schema uses for ``structure``."""
        for value, candidate in self.values.items():
            if candidate is structure:
                return value
        raise UnknownLabelError(f"label schema '{self.name}' has no {structure.value}")

    def to_canonical(self, labels: np.ndarray) -> np.ndarray:
        """Translate a label array in this schema to canonical values (a new uint8 array)."""
        values = check_label_values(labels, self.values, self.name)
        out = np.zeros(labels.shape, dtype=np.uint8)
        for value in values:
            out[labels == value] = self.values[int(value)].label
        return out

    def from_canonical(self, labels: np.ndarray) -> np.ndarray:
        """Translate canonical labels to this schema; the sector becomes background if the schema lacks it."""
        values = check_label_values(labels, {s.label: s for s in Structure}, ECHOSYNTH.name)
        out = np.zeros(labels.shape, dtype=np.uint8)
        for value in values:
            structure = _STRUCTURE_BY_VALUE[int(value)]
            if structure is Structure.SECTOR and structure not in self.values.values():
                structure = Structure.BACKGROUND
            out[labels == value] = self.value_of(structure)
        return out


_STRUCTURE_BY_VALUE = {s.label: s for s in Structure}


@dataclass(frozen=True, eq=False)
class ClassLayout(LabelSchema):
    """The classes a cache or a model works in: a label schema whose values are also channel indices in
    value order (one-hot channel c is the c-th smallest value). Stored in JSON as ``{"1": "lv_cavity"}``;
    two layouts are equal when they map the same values to the same structures, whatever their names."""

    @classmethod
    def of(cls, schema: LabelSchema) -> ClassLayout:
        """The layout of a label schema."""
        return cls(schema.name, dict(sorted(schema.values.items())))

    @classmethod
    def from_json(cls, mapping: Any, name: str = "classes") -> ClassLayout:
        """A layout from its JSON form; an InputError names a value or structure that is not valid."""
        if isinstance(mapping, ClassLayout):
            return mapping
        if not isinstance(mapping, Mapping):
            raise InputError(f"{name}: expected a mapping of class value to structure, got {mapping!r}")
        values: dict[int, Structure] = {}
        for value, structure in mapping.items():
            try:
                number = int(value)
                values[number] = Structure(structure)
            except (TypeError, ValueError):
                known = ", ".join(s.value for s in Structure)
                raise InputError(
                    f"{name}: class {value!r} -> {structure!r} is not a class value and a known structure "
                    f"({known})"
                ) from None
            if number < 0 or number > 255:
                raise InputError(f"{name}: class value {number} is outside 0..255")
        if len(set(values.values())) != len(values):
            raise InputError(f"{name}: a structure appears under two class values ({dict(mapping)})")
        return cls(name, dict(sorted(values.items())))

    def as_json(self) -> dict[str, str]:
        """``{"1": "lv_cavity", ...}`` in value order."""
        return {str(v): s.value for v, s in sorted(self.values.items())}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassLayout) and dict(self.values) == dict(other.values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.values.items())))

    def __len__(self) -> int:
        return len(self.values)

    def __bool__(self) -> bool:
        return bool(self.values)

    def has(self, structure: Structure) -> bool:
        """True if one class is ``structure``."""
        return structure in self.values.values()

    @property
    def channel_values(self) -> np.ndarray:
        """Class value of each channel (uint8), so ``channel_values[logits.argmax(1)]`` gives a label map."""
        return np.array(sorted(self.values), dtype=np.uint8)

    @property
    def structures(self) -> tuple[Structure, ...]:
        """The structure of each channel."""
        return tuple(self.values[v] for v in sorted(self.values))

    def channels_of(self, labels: np.ndarray) -> np.ndarray:
        """Channel indices (int64) of a label map in this layout; an error names unknown values."""
        values = check_label_values(labels, self.values, self.name)
        lookup = np.zeros(int(max(max(self.values), int(values.max()))) + 1, dtype=np.int64)
        lookup[self.channel_values] = np.arange(len(self))
        return lookup[np.asarray(labels).astype(np.int64)]

    def one_hot_canonical(self, canonical: np.ndarray) -> np.ndarray:
        """A canonical label map (...,) as float32 one-hot channels (C, ...) in this layout."""
        return np.stack([canonical == s.label for s in self.structures]).astype(np.float32)


def check_label_values(labels: np.ndarray, allowed: Iterable[int], schema_name: str) -> np.ndarray:
    """The distinct values of a label array, after checking they are finite integers the schema knows."""
    labels = np.asarray(labels)
    if labels.size == 0:
        raise InputError("the label map is empty (no voxels)")
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)):
            raise InputError("the label map contains NaN or infinite values")
        if not np.all(labels == np.round(labels)):
            raise InputError("the label map contains non-integer values; is it an image rather than labels?")
    elif not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise InputError(f"label maps must hold integers, got dtype {labels.dtype}")
    values = np.unique(labels)
    unknown = sorted(int(v) for v in values if int(v) not in set(allowed))
    if unknown:
        raise UnknownLabelError(
            f"label value(s) {unknown} are not in the '{schema_name}' schema "
            f"(known: {sorted(int(v) for v in allowed)})"
        )
    return values.astype(np.int64)


HEART = (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM)


def require_heart(labels: np.ndarray) -> np.ndarray:
    """The distinct values of a canonical label array, after checking it draws a heart structure."""
    values = check_label_values(labels, _STRUCTURE_BY_VALUE, "echosynth")
    if not {s.label for s in HEART} & {int(v) for v in values}:
        raise InputError("the label map is empty: no heart structure (LV cavity, myocardium or left atrium)")
    return values


ECHOSYNTH = LabelSchema("echosynth", _STRUCTURE_BY_VALUE)
CAMUS = LabelSchema(
    "camus",
    {0: Structure.BACKGROUND, 1: Structure.LV_CAVITY, 2: Structure.LV_MYOCARDIUM, 3: Structure.LEFT_ATRIUM},
)
# MITEA: LV myocardium and cavity. The value order is configurable by name in the data readers.
MITEA = LabelSchema("mitea", {0: Structure.BACKGROUND, 1: Structure.LV_MYOCARDIUM, 2: Structure.LV_CAVITY})
ECHONET = LabelSchema("echonet", {0: Structure.BACKGROUND, 1: Structure.LV_CAVITY})
# Conditioning classes of the Echo-from-noise semantic diffusion model (REFERENCE.md section 1).
ECHO_FROM_NOISE = LabelSchema(
    "echo-from-noise",
    {
        0: Structure.BACKGROUND,
        1: Structure.LV_CAVITY,
        2: Structure.SECTOR,
        3: Structure.LV_MYOCARDIUM,
        4: Structure.LEFT_ATRIUM,
    },
)

SCHEMAS: dict[str, LabelSchema] = {s.name: s for s in (ECHOSYNTH, CAMUS, MITEA, ECHONET, ECHO_FROM_NOISE)}


def schema_named(name: str) -> LabelSchema:
    """Look up a schema by name, with an error listing the known ones."""
    try:
        return SCHEMAS[name.lower()]
    except KeyError:
        raise InputError(f"unknown label schema '{name}' (known: {', '.join(SCHEMAS)})") from None


def structures_present(canonical_labels: np.ndarray) -> list[Structure]:
    """The structures with at least one voxel in a canonical label map."""
    values = np.unique(canonical_labels)
    return [_STRUCTURE_BY_VALUE[int(v)] for v in values if int(v) in _STRUCTURE_BY_VALUE]
