"""Settings dataclasses' JSON round trip and checks, shared by every family (torch-free)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, TypeVar

from EchoSynthLib.checks import check_count, check_number
from EchoSynthLib.errors import InputError

Settings = TypeVar("Settings", bound="SettingsMixin")


def _check_value(name: str, annotation: str, value: Any, limits: tuple[float | None, float | None]) -> None:
    """InputError naming the setting when ``value`` does not fit its annotation and ``limits``."""
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
    elif annotation.startswith("tuple["):
        item = annotation[len("tuple[") :].split(",")[0].strip()
        if not isinstance(value, tuple) or not value:
            raise InputError(f"{what} must be a non-empty list, got {value!r}")
        for entry in value:
            _check_value(name, item, entry, limits)


class SettingsMixin:
    """JSON round trip for frozen settings dataclasses: unknown keys rejected, lists back to tuples, every
    value checked against its annotation and the class's ``LIMITS`` (name -> (minimum, maximum), either
    None; whole numbers default to at least 0, numbers to any finite value)."""

    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {}

    def __post_init__(self) -> None:
        self.check_settings()

    def check_settings(self) -> None:
        """InputError naming the first setting of the wrong type or out of range."""
        for item in fields(self):
            annotation = item.type if isinstance(item.type, str) else getattr(item.type, "__name__", "")
            _check_value(
                item.name, annotation, getattr(self, item.name), self.LIMITS.get(item.name, (None, None))
            )

    @classmethod
    def from_dict(cls: type[Settings], values: dict[str, Any]) -> Settings:
        """Settings from a dict; an InputError names unknown keys."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise InputError(f"unknown {cls.__name__} setting(s): {', '.join(sorted(unknown))}")
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as error:
            raise InputError(f"invalid {cls.__name__} settings: {error}") from None

    def with_overrides(self: Settings, overrides: dict[str, Any]) -> Settings:
        """A copy with some settings changed."""
        return type(self).from_dict({**asdict(self), **overrides})

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
