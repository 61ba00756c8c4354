"""The model families: which package kind belongs to which family, and what task each performs.

A family is one folder, ``EchoSynthLib/models/<name>/``, holding its settings, network, trainer and
pipeline (inference). Its package (``__init__.py``) exposes the family's entry points, imported only when
used, so this table is all that ``import EchoSynthLib`` and the Generator list need (no torch):

- ``build_trainer(data, run, settings, device)``: a resumable trainer (``training.runs.StepTrainer``) for a
  training cache, run folder, settings dict (``--config`` / ``--set``) and device;
- ``build_generator(folder, settings, warn)``, for label map -> image families: a ``inference.generators``
  Generator for a package folder and ``GeneratorSettings``.

The command line (``train``, ``synthesize``), the worker and the Slicer panel choose code through this
table; no kind name is tested anywhere else. ``register`` adds a family (a plug-in, or a test's toy
family); ``ECHOSYNTH_FAMILIES`` names modules to import for their ``register`` calls, so worker processes
know them too.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from types import ModuleType

from EchoSynthLib.errors import InputError

LABELS_TO_IMAGE = "label map -> image"
NOTHING_TO_PAIRS = "nothing -> (image, label map)"
IMAGE_TO_IMAGE = "image (+ labels) -> image"
IMAGE_TO_FEATURES = "image -> features"
IMAGE_TO_LABELS = "image -> label map"
IMAGE_TO_LATENTS = "image (+ labels) -> latents (autoencoder)"
TASKS = (
    LABELS_TO_IMAGE,
    NOTHING_TO_PAIRS,
    IMAGE_TO_IMAGE,
    IMAGE_TO_FEATURES,
    IMAGE_TO_LABELS,
    IMAGE_TO_LATENTS,
)
PLUGINS_ENV = "ECHOSYNTH_FAMILIES"


@dataclass(frozen=True)
class Family:
    """A model family: its name (``echosynth train NAME``), package kind, task, module, the sampling
    options (``inference.options``) its generator uses, and its settings class (``"module:Class"``, a
    ``models.settings.SettingsMixin``; empty for a family that checks its own settings on load)."""

    name: str
    kind: str
    task: str
    module: str
    sampling: tuple[str, ...] = ()
    settings: str = ""
    # (setting, value): a package whose setting has this value makes images only from a source image (a
    # model guided by it translates only; the Generator lists and ``synthesize`` leave it out).
    source_guided: tuple[str, str] | None = None

    def load(self) -> ModuleType:
        """The family's module (imports torch and its networks)."""
        return importlib.import_module(self.module)


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (its name and kind must be new, its task one of TASKS)."""
    if family.task not in TASKS:
        raise InputError(f"family '{family.name}': unknown task '{family.task}' (known: {', '.join(TASKS)})")
    clash = [f for f in _FAMILIES.values() if f.kind == family.kind and f.name != family.name]
    if clash:
        raise InputError(f"family '{family.name}': kind '{family.kind}' belongs to '{clash[0].name}'")
    _FAMILIES[family.name] = family
    return family


SDM = register(
    Family(
        "sdm",
        "sdm2d",
        LABELS_TO_IMAGE,
        "EchoSynthLib.models.sdm",
        ("steps", "sampler", "guidance_scale", "plane", "slice_index", "strength"),
        "EchoSynthLib.models.sdm.config:SDMConfig",
    )
)
SEGMENTER = register(
    Family(
        "segmenter",
        "segmenter2d",
        IMAGE_TO_LABELS,
        "EchoSynthLib.models.segmenter",
        settings="EchoSynthLib.models.segmenter.network:SegmenterConfig",
    )
)
ENCODER = register(
    Family(
        "features",
        "echoencoder2d",
        IMAGE_TO_FEATURES,
        "EchoSynthLib.models.features",
        settings="EchoSynthLib.models.features.config:EncoderConfig",
    )
)
AUTOENCODER = register(
    Family(
        "autoencoder",
        "autoencoder",
        IMAGE_TO_LATENTS,
        "EchoSynthLib.models.autoencoder",
        settings="EchoSynthLib.models.autoencoder.config:AutoencoderConfig",
    )
)
# The latent diffusion models: one folder, one config and trainer, two tasks (so two families).
LATENT_SETTINGS = "EchoSynthLib.models.latent.config:LatentConfig"
LATENT = register(
    Family(
        "latent",
        "latent-synthesis",
        LABELS_TO_IMAGE,
        "EchoSynthLib.models.latent",
        ("steps", "sampler", "guidance_scale", "plane", "slice_index", "strength"),
        LATENT_SETTINGS,
    )
)
LATENT_PAIRS = register(
    Family(
        "latent-pairs",
        "latent-pairs",
        NOTHING_TO_PAIRS,
        "EchoSynthLib.models.latent.pairs",
        ("steps", "sampler"),
        LATENT_SETTINGS,
    )
)
# The few-step adversarial diffusion model (Tiago et al. / SynDiff): T fixed steps, so no sampler options;
# a start strength runs fewer of them from the simulator's image.
ADVERSARIAL = register(
    Family(
        "adversarial",
        "adversarial2d",
        LABELS_TO_IMAGE,
        "EchoSynthLib.models.adversarial",
        ("plane", "slice_index", "strength"),
        "EchoSynthLib.models.adversarial.config:AdversarialConfig",
        ("guide", "labels+source"),
    )
)
# A model put in the look of the user's scanner (``echosynth adapt``): its base model samples (so it takes
# every option the base takes), the fitted look follows.
ADAPTED = register(
    Family(
        "adapted",
        "adapted-look",
        LABELS_TO_IMAGE,
        "EchoSynthLib.models.adapted",
        ("steps", "sampler", "guidance_scale", "plane", "slice_index", "strength"),
        "EchoSynthLib.models.adapted.config:AdaptedConfig",
    )
)
# New anatomies: a statistical shape model of label maps whose maps a label map -> image model draws.
SHAPE_MODEL = register(
    Family(
        "shape-model",
        "shape-model",
        NOTHING_TO_PAIRS,
        "EchoSynthLib.models.shape_model",
        ("steps", "sampler"),
        "EchoSynthLib.models.shape_model.config:ShapeModelConfig",
    )
)
SDM_KIND, SEGMENTER_KIND, ENCODER_KIND = SDM.kind, SEGMENTER.kind, ENCODER.kind
AUTOENCODER_KIND = AUTOENCODER.kind
LATENT_KINDS = (LATENT.kind, LATENT_PAIRS.kind)


def _load_plugins() -> None:
    for name in filter(None, (n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise InputError(f"{PLUGINS_ENV}: cannot import model family module '{name}' ({error})") from None


def families() -> list[Family]:
    """Every known family (built in, then registered plug-ins)."""
    _load_plugins()
    return list(_FAMILIES.values())


def family_named(name: str) -> Family:
    """The family called ``name`` (InputError listing the known ones)."""
    known = {f.name: f for f in families()}
    if name not in known:
        raise InputError(f"unknown model family '{name}' (known: {', '.join(known)})")
    return known[name]


def family_of_kind(kind: str) -> Family | None:
    """The family whose packages have ``kind``, or None for a kind this EchoSynth does not know."""
    return next((f for f in families() if f.kind == kind), None)


def check_package_settings(kind: str, settings: dict, where: str) -> None:
    """Refuse, in one line naming ``where``, package settings that the family of ``kind`` would refuse when
    the model is loaded (so that ``models add`` and installs catch them, not the first run)."""
    from EchoSynthLib.engine.settings import RUN_SETTING_NAMES

    family = family_of_kind(kind)
    if family is None or not family.settings:
        return
    module, _, name = family.settings.partition(":")
    settings_class = getattr(importlib.import_module(module), name)
    # Packages may carry their version and (written before run settings had their own file) run settings.
    model = {k: v for k, v in settings.items() if k not in RUN_SETTING_NAMES and k != "version"}
    try:
        settings_class.from_dict(model)
    except InputError as error:
        raise InputError(f"{where}: settings a '{kind}' model cannot have ({error})") from None


def translates_only(kind: str, settings: object) -> bool:
    """Whether a package of ``kind`` with these settings makes images only from a source image."""
    family = family_of_kind(kind)
    if family is None or family.source_guided is None or not isinstance(settings, dict):
        return False
    name, value = family.source_guided
    return settings.get(name) == value


def task_of(kind: str) -> str | None:
    """The task of a package kind, or None for a kind this EchoSynth does not know."""
    family = family_of_kind(kind)
    return family.task if family else None


def kinds_for(task: str) -> tuple[str, ...]:
    """The package kinds that perform ``task``."""
    return tuple(f.kind for f in families() if f.task == task)


def require_task(kind: str, task: str, what: str) -> Family:
    """The family of a ``kind`` package; InputError naming ``what`` when it cannot do ``task``."""
    family = family_of_kind(kind)
    if family is None or family.task != task:
        does = family.task if family else "unknown to this EchoSynth"
        raise InputError(
            f"{what} is a '{kind}' model ({does}); it cannot be used for {task} "
            f"(kinds that can: {', '.join(kinds_for(task))})"
        )
    return family
