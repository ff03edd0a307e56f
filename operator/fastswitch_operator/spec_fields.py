"""Typed, defaulted reads from a spec's nested objects, collecting every problem found, and the
Kubernetes shapes several parts of the spec share (a Secret key, a placement)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.utils.quantity import parse_quantity

_MISSING = object()
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


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


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str


@dataclass(frozen=True)
class Placement:
    """Where and how big a component's pods are (Kubernetes shapes, passed through)."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


def parse_secret_key(reader: FieldReader, key: str, default_key: str | None) -> SecretKey | None:
    if not reader.has(key):
        return None
    sub = reader.sub(key, ("name", "key"))
    name, secret_key = sub.get("name", "string"), sub.get("key", "string", default_key)
    if not name or not DNS_SUBDOMAIN.match(name):
        sub.problems.append(f"{sub.path}.name must be the name of a Secret")
    if not secret_key:
        sub.problems.append(f"{sub.path}.key must name a key of the Secret")
    return SecretKey(name or "", secret_key or "")


def parse_placement(reader: FieldReader, *, with_scheduling: bool = True,
                    default_resources: Mapping[str, Any] | None = None) -> Placement:
    """Resources (`default_resources` when the spec sets none) and, `with_scheduling`, the
    node selector and tolerations of a component's pods."""
    resources = reader.get("resources", "object", copy.deepcopy(dict(default_resources or {})))
    for part in resources:
        if part not in ("requests", "limits"):
            reader.problems.append(f"{reader.path}.resources.{part} is not a known field")
    for part in ("requests", "limits"):
        quantities = resources.get(part) or {}
        if not isinstance(quantities, Mapping):
            reader.problems.append(f"{reader.path}.resources.{part} must be of type object")
            continue
        for resource, quantity in quantities.items():
            if parse_bytes(quantity) is None:
                reader.problems.append(
                    f"{reader.path}.resources.{part}.{resource} is not a quantity: {quantity!r}"
                )
    if not with_scheduling:
        return Placement(resources=dict(resources))
    return Placement(
        resources=dict(resources),
        node_selector=dict(reader.get("nodeSelector", "object", {})),
        tolerations=list(reader.get("tolerations", "array", [])),
    )
