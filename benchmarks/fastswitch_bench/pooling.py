"""Several runs of one workload as one sample: pooled percentiles, their ratios with bootstrap
intervals, and each run's own ratios beside them (pure).

A tail percentile of one run rests on a few turns (p99.9 of 115 turns is the worst one), and a
rerun starves different turns, so one run's tail ratio is a draw. Pooling the turns of several
runs gives the percentile more samples behind it and shows the spread the single runs hide.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence

from fastswitch_bench.bootstrap import TurnLatencies, ratio_intervals
from fastswitch_bench.results import BASELINE, FASTSWITCH, turns_from_figures
from fastswitch_bench.stats import (
    DEFAULT_PERCENTILES,
    percentile_key,
    percentiles,
    unsupported_percentiles,
)

LATENCY_RATIO_KEYS = tuple(f"{metric}_{percentile_key(q)}" for metric in ("ttft", "tbt")
                           for q in DEFAULT_PERCENTILES)
# What a configuration ran with, as its report's settings record it: runs pool only when these
# match where both reports record them (the rest of the settings are what happened: failed
# turns, reused bytes...), and when their commands match but for --out.
SETUP_KEYS = ("mode", "model", "device", "dtype", "block_size", "compute_threads", "policy",
              "trace_pattern", "trace_update_probability_per_iteration", "kv_cache_bytes",
              "host_kv_bytes", "max_num_batched_tokens", "tick_ms")


class PoolingError(ValueError):
    """The reports cannot be pooled (no turns recorded, different workloads or setups)."""


def pool_reports(reports: Sequence[Mapping], *, names: Sequence[str]) -> dict[str, object]:
    """The pooled comparison of `reports` (report.json documents of `fastswitch bench`, one
    per run, `names` naming them). Raises PoolingError unless every report replayed the same
    workload with the same setup (SETUP_KEYS) and carries per-turn samples for both
    configurations."""
    if len(reports) != len(names) or not reports:
        raise PoolingError("pool at least one report, with one name per report")
    _check_same_setup(reports, names)
    pooled: dict[str, list[TurnLatencies]] = {BASELINE: [], FASTSWITCH: []}
    for report, name in zip(reports, names, strict=True):
        for config in pooled:
            turns = turns_from_figures(report["configs"][config])
            if not turns:
                raise PoolingError(f"{name}: no per-turn samples for {config} (a report "
                                   "written before reports recorded turns cannot be pooled)")
            pooled[config].extend(turns)
    figures = {config: _latency_figures(turns) for config, turns in pooled.items()}
    ratios = {key: _ratio(figures[BASELINE], figures[FASTSWITCH], key)
              for key in LATENCY_RATIO_KEYS}
    per_run = [{"name": name, **{key: report["ratios"].get(key) for key in LATENCY_RATIO_KEYS}}
               for report, name in zip(reports, names, strict=True)]
    return {
        "runs": list(names),
        "workload": dict(reports[0]["workload"]),
        "machines": sorted({str(r["machine"].get("cpu_model")) for r in reports}),
        "configs": figures,
        "ratios": ratios,
        "ratio_intervals": ratio_intervals(pooled[BASELINE], pooled[FASTSWITCH]),
        "per_run_ratios": per_run,
        "num_runs_every_ratio_at_least_1": sum(
            all(run[key] is not None and run[key] >= 1.0 for key in LATENCY_RATIO_KEYS)
            for run in per_run),
    }


def _check_same_setup(reports: Sequence[Mapping], names: Sequence[str]) -> None:
    first = reports[0]
    for report, name in zip(reports[1:], names[1:], strict=True):
        if report["workload"] != first["workload"]:
            raise PoolingError(f"{name} replayed a different workload than {names[0]}")
        if _command_but_out(report["command"]) != _command_but_out(first["command"]):
            raise PoolingError(f"{name} ran `{report['command']}`, {names[0]} "
                               f"`{first['command']}`")
        for config in (BASELINE, FASTSWITCH):
            settings, first_settings = (r["configs"][config]["settings"] for r in (report, first))
            for key in SETUP_KEYS:
                if key in settings and key in first_settings and settings[key] != first_settings[key]:
                    raise PoolingError(f"{name} ran {config} with {key} {settings[key]!r}, "
                                       f"{names[0]} with {first_settings[key]!r}")


def _command_but_out(command: str) -> list[str]:
    """The command's words without its --out option (where each run wrote its report)."""
    words = shlex.split(command)
    kept, skip_next = [], False
    for word in words:
        if skip_next:
            skip_next = False
        elif word == "--out":
            skip_next = True
        elif not word.startswith("--out="):
            kept.append(word)
    return kept


def _latency_figures(turns: Sequence[TurnLatencies]) -> dict[str, dict[str, object]]:
    samples = {"ttft_ms": [t.ttft_ms for t in turns],
               "tbt_ms": [gap for t in turns for gap in t.tbt_ms]}
    return {metric: {"num_samples": len(values), **percentiles(values),
                     "unsupported_percentiles": unsupported_percentiles(len(values))}
            for metric, values in samples.items()}


def _ratio(baseline: Mapping, fastswitch: Mapping, key: str) -> float | None:
    metric, percentile = key.split("_", 1)
    numerator, denominator = (side[f"{metric}_ms"][percentile] for side in (baseline, fastswitch))
    return None if denominator == 0 else numerator / denominator
