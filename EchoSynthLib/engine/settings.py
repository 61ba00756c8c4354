"""Settings dataclasses' JSON round trip and checks, shared by every family (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from EchoSynthLib.checks import check_count, check_number
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.errors import InputError

Settings = TypeVar("Settings", bound="SettingsMixin")
NO_INIT = "-"  # the ``init`` run setting of a run from scratch


def _check_value(
    name: str,
    annotation: str,
    value: Any,
    limits: tuple[float | None, float | None],
    may_be_empty: bool = False,
) -> None:
    """InputError naming the setting when ``value`` does not fit its annotation and ``limits`` (a list
    may be empty only where ``may_be_empty``)."""
    low, high = limits
    what = f"setting {name}"
    if annotation == "bool":
        if not isinstance(value, bool):
            raise InputError(f"{what} must be true or false, got {value!r}")
    elif annotation == "int":
        check_count(value, what, int(low) if low is not None else 0, None if high is None else int(high))
    elif annotation == "float":
        check_number(value, what, minimum=low, maximum=high)
    elif annotation == "str":
        if not isinstance(value, str) or not value:
            raise InputError(f"{what} must be a non-empty text, got {value!r}")
    elif annotation == "ClassLayout":
        if not isinstance(value, ClassLayout):
            raise InputError(f"{what} must be a class layout, got {value!r}")
    elif annotation.startswith("tuple["):
        item = annotation[len("tuple[") :].split(",")[0].strip()
        if not isinstance(value, tuple) or not (value or may_be_empty):
            raise InputError(f"{what} must be a {'' if may_be_empty else 'non-empty '}list, got {value!r}")
        for entry in value:
            _check_value(name, item, entry, limits)


def _annotation(item: Any) -> str:
    return item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")


class SettingsMixin:
    """JSON round trip for frozen settings dataclasses: unknown keys rejected, lists back to tuples, class
    layouts to and from their JSON form, every value checked against its annotation and the class's
    ``LIMITS`` (name -> (minimum, maximum), either None; whole numbers default to at least 0, numbers to
    any finite value); lists must hold something unless named in ``MAY_BE_EMPTY``."""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {}
    MAY_BE_EMPTY: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        self.check_settings()

    def check_settings(self) -> None:
        """InputError naming the first setting of the wrong type or out of range."""
        for item in fields(self):
            _check_value(
                item.name,
                _annotation(item),
                getattr(self, item.name),
                self.LIMITS.get(item.name, (None, None)),
                item.name in self.MAY_BE_EMPTY,
            )

    @classmethod
    def from_dict(cls: type[Settings], values: dict[str, Any]) -> Settings:
        """Settings from a dict; an InputError names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown {cls.__name__} setting(s): {', '.join(sorted(unknown))}")
        layouts = {f.name for f in fields(cls) if _annotation(f) == "ClassLayout"}
        converted = {
            k: ClassLayout.from_json(v, k) if k in layouts else tuple(v) if isinstance(v, list) else v
            for k, v in values.items()
        }
        try:
            return cls(**converted)
        except TypeError as error:
            raise InputError(f"invalid {cls.__name__} settings: {error}") from None

    def with_overrides(self: Settings, overrides: dict[str, Any]) -> Settings:
        """A copy with some settings changed."""
        return type(self).from_dict({**self.as_dict(), **overrides})

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            k: v.as_json() if isinstance(v, ClassLayout) else list(v) if isinstance(v, tuple) else v
            for k, v in values.items()
        }


@dataclass(frozen=True)
class RunSettings(SettingsMixin):
    """How a training run goes, not what it makes: the length, the data workers, the schedule of logs,
    validation, sample grids and checkpoints, micro-batches and compilation. Kept in the run folder's
    ``run.json``, never in a package, and free to change whenever a run resumes (a family's config holds
    what defines the model and must not change)."""

    max_steps: int = 1000
    workers: int = 2
    log_every: int = 50
    val_every: int = 500
    sample_every: int = 2000
    checkpoint_every: int = 500
    sample_steps: int = 25  # sampler steps of the grids
    accumulation_steps: int = 1  # micro-batches per step: the same step with less memory
    compile: bool = False  # torch.compile the training network (worth it on GPUs, for long runs)
    # A package (name or folder) of the same kind whose weights start a new run (fresh optimizers): to go on
    # from a shipped model, or to change a setting such as label_dropout and train on. Ignored on resume.
    init: str = NO_INIT

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "max_steps": (1, None),
        "log_every": (1, None),
        "val_every": (1, None),
        "sample_every": (1, None),
        "checkpoint_every": (1, None),
        "sample_steps": (1, None),
        "accumulation_steps": (1, None),
    }


RUN_SETTING_NAMES = frozenset(f.name for f in fields(RunSettings))


def split_settings(
    values: dict[str, Any], config_type: type[Settings], run_defaults: dict[str, Any]
) -> tuple[dict[str, Any], RunSettings]:
    """``--set`` values split into the family config's and the run's (over the family's ``run_defaults``);
    an InputError names a setting that neither knows."""
    known = {f.name for f in fields(config_type)}
    unknown = sorted(set(values) - known - RUN_SETTING_NAMES)
    if unknown:
        raise InputError(
            f"unknown setting(s) {', '.join(unknown)} (model: {', '.join(sorted(known))}; run: "
            f"{', '.join(sorted(RUN_SETTING_NAMES))})"
        )
    run = {k: v for k, v in values.items() if k in RUN_SETTING_NAMES}
    model = {k: v for k, v in values.items() if k not in RUN_SETTING_NAMES}
    return model, RunSettings.from_dict({**run_defaults, **run})
