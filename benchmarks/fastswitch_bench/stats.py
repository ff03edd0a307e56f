"""Latency percentiles, Jain's fairness index, and fairness over backlogged intervals (pure)."""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 95.0, 99.0, 99.9)


class StatsError(ValueError):
    """A statistic is undefined for its input (e.g. a percentile of no samples)."""


def percentile_key(q: float) -> str:
    """The report's name for percentile q: 50 -> "p50", 99.9 -> "p99.9"."""
    return f"p{q:g}"


def min_samples_for_percentile(q: float) -> int:
    """The fewest samples that leave at least one sample above percentile q (pure): 2 for p50,
    20 for p95, 100 for p99, 1,000 for p99.9. With fewer, linear interpolation puts the
    percentile between the two largest samples, so it is the maximum in all but name."""
    if not 0 <= q < 100:
        raise StatsError(f"a percentile must be in [0, 100), got {q}")
    # 100 / (100 - 99.9) is 1000.0000000000568 in floating point; do not round that up.
    return max(1, math.ceil(100 / (100 - q) - 1e-6))


def unsupported_percentiles(
    num_samples: int, qs: Sequence[float] = DEFAULT_PERCENTILES
) -> list[str]:
    """Keys of the percentiles in `qs` that `num_samples` samples cannot support (pure): for
    65 samples, ["p99", "p99.9"]. Every percentile of no samples is unsupported."""
    return [percentile_key(q) for q in qs if num_samples < min_samples_for_percentile(q)]


def percentiles(
    values: Iterable[float], qs: Sequence[float] = DEFAULT_PERCENTILES
) -> dict[str, float]:
    """Percentiles by linear interpolation between closest ranks (numpy's default method),
    keyed by `percentile_key`. Raises StatsError for no values: there is no honest number."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise StatsError("percentiles of an empty sample are undefined")
    results = np.percentile(array, list(qs), method="linear")
    return {percentile_key(q): float(r) for q, r in zip(qs, results, strict=True)}


def summarize(values: Iterable[float]) -> dict[str, float | int]:
    """num_samples, mean, min, max and the default percentiles. Raises StatsError when empty."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise StatsError("a summary of an empty sample is undefined")
    return {
        "num_samples": int(array.size),
        "mean": float(array.mean()),
        "min": float(array.min()),
        "max": float(array.max()),
        **percentiles(array),
    }


def jain_index(values: Iterable[float]) -> float:
    """Jain's index (sum x)^2 / (n * sum x^2): 1 when all equal, 1/n when one takes all.
    Raises StatsError for no values, negative values, or all zeros (nobody was served)."""
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        raise StatsError("Jain's index of no values is undefined")
    if (array < 0).any():
        raise StatsError("Jain's index needs non-negative values")
    sum_of_squares = float((array**2).sum())
    if sum_of_squares == 0.0:
        raise StatsError("Jain's index is undefined when every value is zero")
    return float(array.sum()) ** 2 / (array.size * sum_of_squares)


class Cdf(NamedTuple):
    """Sorted values and the fraction of samples <= each one (for step plots)."""

    values: np.ndarray
    fractions: np.ndarray


def cdf(values: Iterable[float]) -> Cdf:
    """Empirical CDF (pure); empty input gives empty arrays, which plot as nothing."""
    sorted_values = np.sort(np.asarray(list(values), dtype=float))
    fractions = np.arange(1, sorted_values.size + 1) / max(1, sorted_values.size)
    return Cdf(sorted_values, fractions)


@dataclass(frozen=True)
class ServiceEvent:
    """`num_tokens` tokens delivered to `tenant` at `time_s` (seconds since the run started)."""

    time_s: float
    tenant: str
    num_tokens: int


@dataclass(frozen=True)
class BacklogInterval:
    """`tenant` had queued or running work throughout [start_s, end_s)."""

    tenant: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if self.end_s < self.start_s:
            raise StatsError(f"backlog interval ends before it starts: {self}")


def merge_backlog(spans: Iterable[BacklogInterval]) -> list[BacklogInterval]:
    """Per tenant, the union of possibly overlapping spans (e.g. one per request, submit to
    last token), as disjoint intervals sorted by tenant then start (pure)."""
    by_tenant: dict[str, list[BacklogInterval]] = defaultdict(list)
    for span in spans:
        by_tenant[span.tenant].append(span)
    merged = []
    for tenant in sorted(by_tenant):
        current_start_s, current_end_s = None, None
        for span in sorted(by_tenant[tenant], key=lambda s: s.start_s):
            if current_end_s is not None and span.start_s <= current_end_s:
                current_end_s = max(current_end_s, span.end_s)
                continue
            if current_end_s is not None:
                merged.append(BacklogInterval(tenant, current_start_s, current_end_s))
            current_start_s, current_end_s = span.start_s, span.end_s
        if current_end_s is not None:
            merged.append(BacklogInterval(tenant, current_start_s, current_end_s))
    return merged


@dataclass(frozen=True)
class IntervalFairness:
    """One stretch of time with a constant set of >= 2 backlogged tenants that got service."""

    start_s: float
    end_s: float
    weighted_service: Mapping[str, float]  # tenant -> tokens / weight within the interval
    jain: float


@dataclass(frozen=True)
class BackloggedFairness:
    """`mean_jain` weights each interval by its duration; None when no interval qualified."""

    intervals: tuple[IntervalFairness, ...]
    mean_jain: float | None
    min_jain: float | None
    covered_s: float


def backlogged_fairness(
    events: Iterable[ServiceEvent],
    backlog: Iterable[BacklogInterval],
    weights: Mapping[str, float],
    *,
    window_s: float | None = None,
) -> BackloggedFairness:
    """Fairness measured only where it is owed: while several tenants wanted service (pure).

    Method: cut time at every start and end of a (merged) backlog interval, so the set of
    backlogged tenants is constant within each piece; with `window_s`, cut longer pieces into
    windows of that length for time resolution. A piece counts when >= 2 tenants were
    backlogged and they received tokens in it. Its figure is Jain's index over those tenants'
    weight-normalised service (tokens / weight); a tenant with no work owes and is owed nothing,
    so it is left out, and tokens landing outside any backlog are ignored. The summary is the
    duration-weighted mean and the minimum over counted pieces. Event at time t belongs to the
    piece [a, b) with a <= t < b (the last piece also takes t == b).
    """
    merged = merge_backlog(backlog)
    missing = {interval.tenant for interval in merged} - set(weights)
    if missing:
        raise StatsError(f"no weight for tenants {sorted(missing)}")
    pieces = _pieces(merged, window_s)
    if not pieces:
        return BackloggedFairness((), None, None, 0.0)
    piece_starts_s = [piece.start_s for piece in pieces]
    served: list[dict[str, int]] = [defaultdict(int) for _ in pieces]
    for event in events:
        index = bisect.bisect_right(piece_starts_s, event.time_s) - 1
        if index >= 0 and event.time_s <= pieces[-1].end_s:
            served[index][event.tenant] += event.num_tokens
    results = []
    for piece, tokens_by_tenant in zip(pieces, served, strict=True):
        backlogged = sorted(piece.tenants)
        if len(backlogged) < 2 or not any(tokens_by_tenant.get(t, 0) for t in backlogged):
            continue
        weighted = {t: tokens_by_tenant.get(t, 0) / weights[t] for t in backlogged}
        results.append(
            IntervalFairness(piece.start_s, piece.end_s, weighted, jain_index(weighted.values()))
        )
    if not results:
        return BackloggedFairness((), None, None, 0.0)
    durations_s = np.array([r.end_s - r.start_s for r in results])
    jains = np.array([r.jain for r in results])
    covered_s = float(durations_s.sum())
    # Zero-length pieces cannot carry weight; fall back to a plain mean if all are zero-length.
    mean_jain = (
        float((jains * durations_s).sum() / covered_s) if covered_s > 0 else float(jains.mean())
    )
    return BackloggedFairness(tuple(results), mean_jain, float(jains.min()), covered_s)


class _Piece(NamedTuple):
    start_s: float
    end_s: float
    tenants: frozenset[str]  # backlogged throughout [start_s, end_s)


def _pieces(merged: Sequence[BacklogInterval], window_s: float | None) -> list[_Piece]:
    """Contiguous pieces from the first backlog start to the last end, each with its constant
    set of backlogged tenants (a sweep over interval starts and ends)."""
    if window_s is not None and not window_s > 0:
        raise StatsError(f"window_s must be > 0, got {window_s}")
    changes: dict[float, list[tuple[int, str]]] = defaultdict(list)
    for interval in merged:
        changes[interval.start_s].append((1, interval.tenant))
        changes[interval.end_s].append((-1, interval.tenant))
    times_s = sorted(changes)
    num_active: dict[str, int] = defaultdict(int)
    pieces = []
    for start_s, end_s in zip(times_s, times_s[1:], strict=False):
        for delta, tenant in changes[start_s]:
            num_active[tenant] += delta
        tenants = frozenset(t for t, n in num_active.items() if n > 0)
        step_s = end_s - start_s if window_s is None else window_s
        cursor_s = start_s
        while cursor_s < end_s:
            pieces.append(_Piece(cursor_s, min(cursor_s + step_s, end_s), tenants))
            cursor_s += step_s
    return pieces
