"""What a live child needs to become the desired one: a JSON merge patch, or nothing.

Create-or-patch in the manner of `kubectl apply`: the desired manifest is recorded in an
annotation on the child, so a later reconcile can tell a field the operator stopped setting
(delete it: null in the merge patch) from one the API server added (defaults: leave them).
A live object that already holds everything desired gets no patch at all, so reconciling an
unchanged cluster writes nothing. One field is handed over rather than deleted when the
operator stops setting it: a workload's `spec.replicas`, which a HorizontalPodAutoscaler takes
over (deleting it would have the API server default it to 1 under the autoscaler's feet).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity

LAST_APPLIED_ANNOTATION = "fastswitch.io/last-applied"
_MISSING = object()
_QUANTITY_MAPS = ("requests", "limits")
# (parent key, key) of fields left as they are once no longer desired: someone else owns them.
_HANDED_OVER = {("spec", "replicas")}


def with_last_applied(desired: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `desired` that records itself in its last-applied annotation."""
    result = copy.deepcopy(dict(desired))
    record = copy.deepcopy(result)
    record.get("metadata", {}).get("annotations", {}).pop(LAST_APPLIED_ANNOTATION, None)
    annotations = result.setdefault("metadata", {}).setdefault("annotations", {})
    annotations[LAST_APPLIED_ANNOTATION] = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return result


def last_applied(live: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest recorded on a live object; {} when there is none (or it is unreadable)."""
    raw = (live.get("metadata") or {}).get("annotations", {}).get(LAST_APPLIED_ANNOTATION)
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def plan_patch(live: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The merge patch (RFC 7386) that makes `live` hold `desired`; None when it already does.

    `desired` should come from `with_last_applied`, so the patch also records it.
    """
    patch = _diff(live, desired, last_applied(live), parent_key="")
    return patch or None


def _diff(live: Mapping[str, Any], desired: Mapping[str, Any], previous: Mapping[str, Any],
          parent_key: str) -> dict[str, Any]:
    patch: dict[str, Any] = {}
    for key, want in desired.items():
        have = live.get(key, _MISSING)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            before = previous.get(key)
            nested = _diff(have, want, before if isinstance(before, Mapping) else {}, key)
            if nested:
                patch[key] = nested
        elif not _holds(have, want, key, parent_key) or _list_changed(previous, key, want):
            patch[key] = copy.deepcopy(want)
    for key in previous:
        if key not in desired and key in live and (parent_key, key) not in _HANDED_OVER:
            patch[key] = None  # set by an earlier reconcile, no longer wanted
    return patch


def _list_changed(previous: Mapping[str, Any], key: str, want: Any) -> bool:
    """Whether a list differs from the one last applied. A live list can hold the desired one
    while holding more (server defaults in its items), so without this an item's field the
    operator stopped setting (a NetworkPolicy rule's `from`) would never be removed."""
    return (isinstance(want, list) and key in previous
            and previous[key] != json.loads(json.dumps(want)))


def _holds(have: Any, want: Any, key: str, parent_key: str) -> bool:
    """Whether a live value (found under `key` in a mapping under `parent_key`) carries
    everything the desired one asks for.

    Mappings may carry more keys (server defaults); lists must match item by item;
    resource quantities compare by value ("1000m" holds "1").
    """
    if have is _MISSING:
        return False
    if isinstance(want, Mapping):
        return isinstance(have, Mapping) and all(
            k in have and _holds(have[k], v, k, key) for k, v in want.items()
        )
    if isinstance(want, list):
        return (isinstance(have, list) and len(have) == len(want)
                and all(_holds(h, w, key, parent_key) for h, w in zip(have, want, strict=True)))
    if parent_key in _QUANTITY_MAPS and have != want:
        try:
            return parse_quantity(have) == parse_quantity(want)
        except (ValueError, TypeError):
            return False
    return bool(have == want and type(have) is type(want)) or _same_number(have, want)


def _same_number(have: Any, want: Any) -> bool:
    numbers = (int, float)
    return (isinstance(have, numbers) and isinstance(want, numbers)
            and not isinstance(have, bool) and not isinstance(want, bool) and have == want)
