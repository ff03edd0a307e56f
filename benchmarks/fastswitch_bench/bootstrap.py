"""How sure a baseline / FastSwitch percentile ratio is: a bootstrap over turns (pure).

One run measures one draw of a chaotic system: the same workload replayed twice places,
preempts and starves different turns, so a tail percentile moves from run to run by more than
its sample count suggests. The interval here shows how far the ratio moves when the turns a
run measured are drawn again with replacement (each configuration on its own), the turn being
the unit: a turn's gaps between tokens share its preemptions, so they are resampled together.

What it cannot do: bound a percentile that too few samples stand behind (p99.9 of 115 turns
is the maximum, and no resample exceeds the maximum), so those get no interval; and it
sees only the variation inside the runs it is given — pool several runs
(`benchmarks/pool_bench_reports.py`) to see the variation between runs too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastswitch_bench.stats import DEFAULT_PERCENTILES, min_samples_for_percentile, percentile_key

DEFAULT_NUM_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
INTERVALS_NOTE = (
    "In brackets: a {level:.0%} bootstrap interval of the ratio ({num_resamples:,} resamples "
    "of each configuration's turns, a turn's gaps between tokens kept together). It shows how "
    "much the turns this run happened to measure move the ratio, not how much a rerun would "
    "(runs differ more: pool several). A percentile too few samples stand behind has none."
)


@dataclass(frozen=True)
class TurnLatencies:
    """One turn's client-side latencies: time to its first token and every gap after it."""

    request_id: str
    ttft_ms: float
    tbt_ms: tuple[float, ...]


def ratio_intervals(
    baseline: Sequence[TurnLatencies],
    fastswitch: Sequence[TurnLatencies],
    *,
    qs: Sequence[float] = DEFAULT_PERCENTILES,
    num_resamples: int = DEFAULT_NUM_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, list[float] | None]:
    """[low, high] of baseline / fastswitch per percentile of TTFT and TBT, keyed as the
    report's ratios ("ttft_p99", "tbt_p50", ...). None where either side has too few samples
    for the percentile (stats.min_samples_for_percentile) or a resampled percentile is 0.
    Mutates nothing; the same inputs and seed give the same intervals."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    rng = np.random.default_rng(seed)
    intervals: dict[str, list[float] | None] = {}
    for metric in ("ttft", "tbt"):
        sides = [_resampled_percentiles(turns, metric, qs, num_resamples, rng)
                 for turns in (baseline, fastswitch)]
        for j, q in enumerate(qs):
            key = f"{metric}_{percentile_key(q)}"
            if any(side is None or side[1] < min_samples_for_percentile(q) for side in sides):
                intervals[key] = None
                continue
            (base, _), (fast, _) = sides
            if (fast[:, j] <= 0).any():
                intervals[key] = None
                continue
            tail = (1 - level) / 2 * 100
            with np.errstate(invalid="ignore"):
                low, high = np.nanpercentile(base[:, j] / fast[:, j], [tail, 100 - tail])
            intervals[key] = [float(low), float(high)] if np.isfinite([low, high]).all() else None
    return intervals


def _resampled_percentiles(
    turns: Sequence[TurnLatencies], metric: str, qs: Sequence[float], num_resamples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, int] | None:
    """([num_resamples, len(qs)] percentiles of `metric` over turns drawn with replacement,
    the sample count of the original), or None without samples."""
    if not turns:
        return None
    picks = rng.integers(len(turns), size=(num_resamples, len(turns)))
    if metric == "ttft":
        values = np.array([t.ttft_ms for t in turns], dtype=float)
        return np.percentile(values[picks], list(qs), axis=1).T, values.size
    gaps = [np.asarray(t.tbt_ms, dtype=float) for t in turns]
    num_gaps = sum(g.size for g in gaps)
    if num_gaps == 0:
        return None
    resampled = np.full((num_resamples, len(qs)), np.nan)  # NaN: a draw of gapless turns only
    for row, pick in enumerate(picks):
        drawn = np.concatenate([gaps[i] for i in pick])
        if drawn.size:
            resampled[row] = np.percentile(drawn, list(qs))
    return resampled, num_gaps
