"""The job file: ``job.json`` in a job folder, naming input label files and the generator settings.

Four tasks: ``synthesize`` (images for input label maps), ``generate`` (paired cases from a paired
model, no input), ``translate`` (input images translated through their anatomy) and ``adapt`` (a model in
the look of the scanner whose unlabelled images are the inputs: ``adaptation.adapt``). Paths inside are
relative to the job folder, so a folder can be moved or inspected as a whole. The worker writes
``output/`` (images, augmented label maps, generated pairs, the adapted model package) and, last,
``result.json`` listing them (per input, as pairs, or the model's folder).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from EchoSynthLib.adaptation.adapt import AdaptSettings
from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.errors import InputError
from EchoSynthLib.inference.generators import GeneratorSettings
from EchoSynthLib.inference.options import ACQUISITIONS

FORMAT_VERSION = 1
JOB_FILE = "job.json"
RESULT_FILE = "result.json"
OUTPUT_DIR = "output"
SYNTHESIZE, GENERATE, TRANSLATE, ADAPT = "synthesize", "generate", "translate", "adapt"
TASKS = (SYNTHESIZE, GENERATE, TRANSLATE, ADAPT)
ADAPTED_MODEL = f"{OUTPUT_DIR}/model"  # where an 'adapt' job writes its model package
# The fit of an 'adapt' job: phantom maps the base draws, rounds of the search, settings tried per kind and
# round, and steps of its way back (``adaptation.adapt.AdaptSettings``' defaults; the worker checks their
# ranges there).
ADAPT_DEFAULTS = {
    f.name: f.default
    for f in fields(AdaptSettings)
    if f.name in ("maps", "rounds", "candidates", "way_back")
}


@dataclass(frozen=True)
class SynthesisOptions(GeneratorSettings):
    """What to make: ``n`` images per map, ``augment`` new anatomies per map (image i of the job, maps
    in order, uses seed + i: ``sampling.files.synthesize_files``) seen in ``acquisition`` ('same' or
    'varied'), and the generator settings."""

    n: int = 1
    seed: int = 0
    augment: int = 0
    acquisition: str = ACQUISITIONS[0]

    def __post_init__(self) -> None:
        super().__post_init__()  # the generator settings' own checks (strength, sampler, steps, ...)
        if self.n < 1 or self.augment < 0:
            raise InputError(f"n must be at least 1 and augment at least 0, got {self.n} and {self.augment}")
        if self.acquisition not in ACQUISITIONS:
            raise InputError(f"unknown acquisition '{self.acquisition}' (known: {', '.join(ACQUISITIONS)})")
        if self.acquisition != ACQUISITIONS[0] and not self.augment:
            raise InputError(f"acquisition '{self.acquisition}' goes with new anatomies (augment at least 1)")

    @classmethod
    def from_keywords(cls, **options: Any) -> SynthesisOptions:
        """Settings from keyword arguments; an unknown name is an InputError listing the known ones."""
        known = {f.name for f in fields(cls)} - {"format_version"}
        unknown = sorted(set(options) - known - {"format_version"})
        if unknown:
            raise InputError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**options)


@dataclass(frozen=True)
class JobSpec(SynthesisOptions):
    """A job: ``n`` images of every input label file (and of ``augment`` new anatomies of each); with
    ``task`` 'generate', ``n`` paired cases of a paired model and no input; with ``task`` 'translate', the
    input images translated, their anatomy from ``labels`` (one label file per image, or none) and/or the
    ``segmenter`` (``segment``); with ``task`` 'adapt', the input images (the scanner's, all in one folder
    that holds nothing else) give a look for the base model ``generator``, fitted from ``maps`` of its
    images in ``rounds`` rounds of ``candidates`` settings, written as a model package to
    ``ADAPTED_MODEL``."""

    inputs: tuple[str, ...] = ()
    schema: str = "echosynth"
    task: str = SYNTHESIZE
    labels: tuple[str, ...] = ()
    segment: bool = False
    segmenter: str = "segmenter-camus"
    maps: int = ADAPT_DEFAULTS["maps"]
    rounds: int = ADAPT_DEFAULTS["rounds"]
    candidates: int = ADAPT_DEFAULTS["candidates"]
    way_back: int = ADAPT_DEFAULTS["way_back"]
    format_version: int = field(default=FORMAT_VERSION)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "inputs", tuple(str(p) for p in self.inputs))
        object.__setattr__(self, "labels", tuple(str(p) for p in self.labels))
        if self.task not in TASKS:
            raise InputError(f"unknown job task '{self.task}' (known: {', '.join(TASKS)})")
        if self.task in (SYNTHESIZE, TRANSLATE, ADAPT) and not self.inputs:
            raise InputError(f"a '{self.task}' job needs at least one input file")
        if self.task == GENERATE and (self.inputs or self.augment):
            raise InputError("a 'generate' job takes no input label file and no augmentation")
        if self.task != TRANSLATE and (self.labels or self.segment):
            raise InputError("label files and the segmenter go with 'translate' jobs only")
        if self.task == TRANSLATE:
            if self.labels and len(self.labels) != len(self.inputs):
                raise InputError(f"{len(self.inputs)} images but {len(self.labels)} label files")
            if not (self.labels or self.segment):
                raise InputError("a 'translate' job needs label files or the segmenter")
            if self.n != 1 or self.augment:
                raise InputError("a 'translate' job makes one image per input and no new anatomy")
        fit = {name: getattr(self, name) for name in ADAPT_DEFAULTS}
        if self.task != ADAPT and fit != ADAPT_DEFAULTS:
            raise InputError("maps, rounds, candidates and way_back go with 'adapt' jobs only")
        if self.task == ADAPT:
            if self.n != 1 or self.augment:
                raise InputError("an 'adapt' job makes one model and no images")
            if len({str(Path(name).parent) for name in self.inputs}) != 1:
                raise InputError("the images of an 'adapt' job must all be in one folder")

    def write(self, folder: str | Path) -> Path:
        """Write ``folder/job.json`` atomically."""
        text = json.dumps(asdict(self), indent=1)
        return write_atomically(Path(folder) / JOB_FILE, lambda tmp: tmp.write_text(text))

    @classmethod
    def read(cls, folder: str | Path) -> JobSpec:
        """Read ``folder/job.json``; a missing, foreign or newer file is an InputError."""
        path = Path(folder) / JOB_FILE
        document = read_json(path)
        if document.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"{path}: job format version {document.get('format_version')!r}; this EchoSynth reads "
                f"{FORMAT_VERSION}"
            )
        try:
            return cls.from_keywords(**document)
        except InputError as error:
            raise InputError(f"{path}: {error}") from None


@dataclass(frozen=True)
class InputResult:
    """The outputs made from one input: images of the map itself, then each augmented anatomy."""

    input: str
    images: tuple[str, ...]
    augmented: tuple[tuple[str, tuple[str, ...]], ...] = ()


def write_result(
    folder: str | Path,
    results: list[InputResult],
    warnings: list[str],
    pairs: list[tuple[str, str]] | None = None,
    model: str | None = None,
) -> Path:
    """Write ``folder/result.json`` atomically: the job is complete once it exists. ``pairs``: the
    (image, labels) files of a 'generate' job; ``model``: the package folder an 'adapt' job wrote."""
    document = {
        "format_version": FORMAT_VERSION,
        "inputs": [asdict(r) for r in results],
        "pairs": [list(p) for p in pairs or []],
        "warnings": warnings,
    }
    if model is not None:
        document["model"] = model
    text = json.dumps(document, indent=1)
    return write_atomically(Path(folder) / RESULT_FILE, lambda tmp: tmp.write_text(text))


def read_result(folder: str | Path) -> tuple[list[InputResult], list[str]]:
    """The per-input outputs and warnings of a finished job."""
    path = Path(folder) / RESULT_FILE
    document = read_json(path)
    results = [
        InputResult(
            item["input"],
            tuple(item["images"]),
            tuple((labels, tuple(images)) for labels, images in item.get("augmented", [])),
        )
        for item in document.get("inputs", [])
    ]
    return results, list(document.get("warnings", []))


def read_pairs(folder: str | Path) -> list[tuple[str, str]]:
    """The (image, labels) files of a finished 'generate' job, relative to its folder."""
    document = read_json(Path(folder) / RESULT_FILE)
    return [(str(image), str(labels)) for image, labels in document.get("pairs", [])]


def read_model(folder: str | Path) -> Path:
    """The model package folder a finished 'adapt' job wrote (InputError if it names none)."""
    folder = Path(folder)
    model = read_json(folder / RESULT_FILE).get("model")
    if not isinstance(model, str) or not (folder / model).is_dir():
        raise InputError(f"{folder / RESULT_FILE}: names no model package folder")
    return folder / model


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; anything else is an InputError naming the file."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: expected a JSON object")
    return document
