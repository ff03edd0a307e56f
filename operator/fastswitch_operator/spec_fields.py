"""Typed, defaulted reads from a spec's nested objects, collecting every problem found."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

_MISSING = object()


class FieldReader:
    """Typed, defaulted reads from one object of the spec; problems are collected, not raised."""

    _TYPES: dict[str, Callable[[Any], bool]] = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "string": lambda v: isinstance(v, str),
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "boolean": lambda v: isinstance(v, bool),
    }

    def __init__(self, data: Any, path: str, problems: list[str], known: tuple[str, ...]) -> None:
        self.path, self.problems = path, problems
        if not isinstance(data, Mapping):
            problems.append(f"{path} must be an object")
            data = {}
        self.data = data
        for key in data:
            if key not in known:
                problems.append(f"{path}.{key} is not a known field")

    def get(self, key: str, kind: str, default: Any = None, *, choices: tuple = (),
            low: float | None = None, high: float | None = None) -> Any:
        value = self.data.get(key, _MISSING)
        if value is _MISSING or value is None:
            return default
        where = f"{self.path}.{key}"
        if not self._TYPES[kind](value):
            self.problems.append(f"{where} must be of type {kind}")
            return default
        if choices and value not in choices:
            self.problems.append(f"{where} must be one of {', '.join(choices)}, not {value!r}")
        if low is not None and value < low:
            self.problems.append(f"{where} must be at least {low}, not {value}")
        if high is not None and value > high:
            self.problems.append(f"{where} must be at most {high}, not {value}")
        return value

    def sub(self, key: str, known: tuple[str, ...]) -> FieldReader:
        return FieldReader(self.data.get(key) or {}, f"{self.path}.{key}", self.problems, known)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None


def parse_bytes(quantity: Any) -> int | None:
    """A Kubernetes quantity ("16Gi", 1024) in bytes, or None when it is not one."""
    if isinstance(quantity, bool):
        return None
    try:
        return int(parse_quantity(quantity))
    except (ValueError, TypeError):
        return None
