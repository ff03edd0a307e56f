"""What one configuration's run produced, and the report's JSON document built from it (pure).

`build_report` fixes the report.json contract:
`{"configs": {name: figures}, "ratios": {...}, "ratios_note": str, "machine": {...},
"command": str, "workload": {...}, "fairness_window_s": float | None,
"min_samples_by_percentile": {...}}`, where every config's figures hold `ttft_ms`, `tbt_ms`
and `e2e_ms` objects keyed `p50`, `p95`, `p99`, `p99.9` (plus `num_samples`, `mean`, `min`,
`max` and `unsupported_percentiles`: the keys too few samples stand behind, see
`stats.min_samples_for_percentile`), `throughput_tokens_per_s`, `swap`, `fairness` and
`time_breakdown` (where requests' time went: `breakdown.time_breakdown`) and `turns` (every
turn's TTFT and gaps between tokens, in ms: what pooling runs needs); plus `ratio_intervals`
(`bootstrap.ratio_intervals`, with `ratio_intervals_note`) when both configurations carry
turns, and `scenario` when the run names one.
A latency with no samples has null figures rather than a made-up number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fastswitch_bench.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_NUM_RESAMPLES,
    INTERVALS_NOTE,
    TurnLatencies,
    ratio_intervals,
)
from fastswitch_bench.stats import (
    DEFAULT_PERCENTILES,
    BacklogInterval,
    ServiceEvent,
    backlogged_fairness,
    jain_index,
    min_samples_for_percentile,
    percentile_key,
    summarize,
    unsupported_percentiles,
)

BASELINE = "baseline"
FASTSWITCH = "fastswitch"
DEFAULT_FAIRNESS_WINDOW_S = 2.0
# The scheduler's policies, as the report names them. Only VTC (virtual token counter) orders
# requests for weighted fair share; under the others per-tenant service follows arrivals and
# priorities, so it shows service, not the scheduler's fairness.
POLICY_DESCRIPTIONS = {
    "vtc": "virtual token counter, weighted fair share",
    "fcfs": "first come, first served",
    "priority": "client-given priorities",
    "trace": "priorities replayed from a Random or Markov trace, as in the paper",
}
FAIRNESS_POLICIES = frozenset({"vtc"})
RATIOS_NOTE = (
    "Every ratio is > 1 when FastSwitch does better: baseline / fastswitch for latencies, "
    "swap bytes, copies and stall time; fastswitch / baseline for throughput. "
    "null when either side is missing or the denominator is zero."
)


@dataclass(frozen=True)
class SwapFigures:
    """Context-switch totals reported by the worker(s) over the run. GB = 1e9 bytes."""

    num_preemptions: int
    swap_out_bytes: int
    swap_in_bytes: int
    num_copies: int  # copy calls issued (per block x layer x K/V in the baseline, per extent else)
    stall_ms: float  # time the model waited on copies
    copy_ms: float  # time copies were in flight, overlapped or not
    bandwidth_gb_per_s: Sequence[float] = ()  # achieved, one sample per swap job

    @property
    def total_bytes(self) -> int:
        return self.swap_out_bytes + self.swap_in_bytes


@dataclass(frozen=True)
class ConfigResult:
    """One configuration's replay of the workload. Times are client-side, in ms per sample;
    `service_events` and `backlog` are in seconds since the run started; `settings` describes
    the configuration (mode, block size, ...) for the reader. `turns` holds the same TTFT and
    TBT samples grouped by turn (empty when the caller has only the flat lists)."""

    name: str
    ttft_ms: Sequence[float]
    tbt_ms: Sequence[float]
    e2e_ms: Sequence[float]
    num_generated_tokens: int
    duration_s: float
    tenant_weights: Mapping[str, float]
    served_tokens_by_tenant: Mapping[str, int]
    service_events: Sequence[ServiceEvent]
    backlog: Sequence[BacklogInterval]
    swap: SwapFigures
    settings: Mapping[str, object] = field(default_factory=dict)
    time_breakdown: Mapping[str, object] = field(default_factory=dict)  # breakdown.time_breakdown
    turns: Sequence[TurnLatencies] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a configuration needs a name")
        if not self.duration_s > 0:
            raise ValueError(f"{self.name}: duration_s must be > 0, got {self.duration_s}")
        tenants = set(self.served_tokens_by_tenant) | {e.tenant for e in self.service_events}
        unweighted = tenants - set(self.tenant_weights)
        if unweighted:
            raise ValueError(f"{self.name}: no weight for tenants {sorted(unweighted)}")


def latency_figures(values_ms: Sequence[float]) -> dict[str, float | int | None]:
    """summarize(), or the same keys with null figures when there are no samples (pure)."""
    if len(values_ms) == 0:
        keys = ["mean", "min", "max", *(percentile_key(q) for q in DEFAULT_PERCENTILES)]
        figures = {"num_samples": 0, **dict.fromkeys(keys)}
    else:
        figures = summarize(values_ms)
    return {**figures, "unsupported_percentiles": unsupported_percentiles(len(values_ms))}


def config_figures(
    result: ConfigResult, *, fairness_window_s: float | None = DEFAULT_FAIRNESS_WINDOW_S
) -> dict[str, object]:
    """The report's figures for one configuration (pure)."""
    swap = result.swap
    return {
        "name": result.name,
        "settings": dict(result.settings),
        "num_requests": len(result.e2e_ms),
        "ttft_ms": latency_figures(result.ttft_ms),
        "tbt_ms": latency_figures(result.tbt_ms),
        "e2e_ms": latency_figures(result.e2e_ms),
        "num_generated_tokens": result.num_generated_tokens,
        "duration_s": result.duration_s,
        "throughput_tokens_per_s": result.num_generated_tokens / result.duration_s,
        "swap": {
            "num_preemptions": swap.num_preemptions,
            "swap_out_bytes": swap.swap_out_bytes,
            "swap_in_bytes": swap.swap_in_bytes,
            "total_bytes": swap.total_bytes,
            "num_copies": swap.num_copies,
            "stall_ms": swap.stall_ms,
            "copy_ms": swap.copy_ms,
            "bandwidth_gb_per_s": latency_figures(swap.bandwidth_gb_per_s),
        },
        "fairness": _fairness_figures(result, fairness_window_s),
        "time_breakdown": dict(result.time_breakdown),
        # Microseconds are finer than the client measures; rounding keeps report.json small.
        "turns": [{"request_id": t.request_id, "ttft_ms": round(t.ttft_ms, 3),
                   "tbt_ms": [round(gap, 3) for gap in t.tbt_ms]} for t in result.turns],
    }


def turns_from_figures(figures: Mapping) -> list[TurnLatencies]:
    """A configuration's turns back from its report figures (`config_figures`) (pure)."""
    return [TurnLatencies(t["request_id"], t["ttft_ms"], tuple(t["tbt_ms"]))
            for t in figures.get("turns", ())]


def compute_ratios(baseline: Mapping, fastswitch: Mapping) -> dict[str, float | None]:
    """Baseline-versus-FastSwitch ratios from two `config_figures` results (pure)."""
    ratios = {}
    for metric in ("ttft_ms", "tbt_ms", "e2e_ms"):
        for q in DEFAULT_PERCENTILES:
            key = percentile_key(q)
            ratios[f"{metric.removesuffix('_ms')}_{key}"] = _ratio(
                baseline[metric][key], fastswitch[metric][key]
            )
    ratios["throughput"] = _ratio(
        fastswitch["throughput_tokens_per_s"], baseline["throughput_tokens_per_s"]
    )
    for key, swap_key in (
        ("swap_bytes", "total_bytes"),
        ("num_copies", "num_copies"),
        ("stall_ms", "stall_ms"),
    ):
        ratios[key] = _ratio(baseline["swap"][swap_key], fastswitch["swap"][swap_key])
    return ratios


def build_report(
    results: Sequence[ConfigResult],
    *,
    command: str,
    machine: Mapping[str, object],
    workload: Mapping[str, object],
    fairness_window_s: float | None = DEFAULT_FAIRNESS_WINDOW_S,
    scenario: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The report.json document (pure). `results` must include configurations named
    "baseline" and "fastswitch" (ratios compare those two); further ones, e.g. ablations,
    appear under "configs" only. `scenario` (scenarios.scenario_mapping) says what ran and
    how it maps onto the paper; the key is present only when given."""
    names = [r.name for r in results]
    if len(set(names)) != len(names):
        raise ValueError(f"configuration names must be unique, got {names}")
    missing = {BASELINE, FASTSWITCH} - set(names)
    if missing:
        raise ValueError(f"the report compares baseline and fastswitch; missing {sorted(missing)}")
    configs = {r.name: config_figures(r, fairness_window_s=fairness_window_s) for r in results}
    intervals = comparison_intervals(results)
    interval_entries = {} if intervals is None else {
        "ratio_intervals": intervals,
        "ratio_intervals_note": INTERVALS_NOTE.format(level=DEFAULT_LEVEL,
                                                      num_resamples=DEFAULT_NUM_RESAMPLES)}
    return {
        "configs": configs,
        "ratios": compute_ratios(configs[BASELINE], configs[FASTSWITCH]),
        "ratios_note": RATIOS_NOTE,
        **interval_entries,
        "machine": dict(machine),
        "command": command,
        "workload": dict(workload),
        "fairness_window_s": fairness_window_s,
        "min_samples_by_percentile": {
            percentile_key(q): min_samples_for_percentile(q) for q in DEFAULT_PERCENTILES
        },
        **({} if scenario is None else {"scenario": dict(scenario)}),
    }


def comparison_intervals(results: Sequence[ConfigResult]) -> dict[str, list[float] | None] | None:
    """Bootstrap intervals of the baseline / fastswitch latency ratios (pure); None unless
    both configurations are there and carry their turns."""
    by_name = {r.name: r for r in results}
    baseline, fastswitch = by_name.get(BASELINE), by_name.get(FASTSWITCH)
    if baseline is None or fastswitch is None or not (baseline.turns and fastswitch.turns):
        return None
    return ratio_intervals(baseline.turns, fastswitch.turns)


def _fairness_figures(result: ConfigResult, window_s: float | None) -> dict[str, object]:
    weighted = {
        tenant: result.served_tokens_by_tenant.get(tenant, 0) / weight
        for tenant, weight in result.tenant_weights.items()
    }
    total_served = sum(result.served_tokens_by_tenant.values())
    # Over the whole run, Jain's index only means "fair" if every tenant always had work;
    # the backlogged figure below is the one that measures the scheduler.
    whole_run_jain = jain_index(weighted.values()) if any(weighted.values()) else None
    backlogged = backlogged_fairness(
        result.service_events, result.backlog, result.tenant_weights, window_s=window_s
    )
    policy = result.settings.get("policy")
    policy = None if policy is None else str(policy)
    return {
        "policy": policy,
        "is_fairness_policy": policy in FAIRNESS_POLICIES,
        "note": fairness_note(
            policy, len(backlogged.intervals), backlogged.covered_s, result.duration_s
        ),
        "jain_whole_run": whole_run_jain,
        "per_tenant": {
            tenant: {
                "weight": weight,
                "served_tokens": result.served_tokens_by_tenant.get(tenant, 0),
                "service_share": (
                    result.served_tokens_by_tenant.get(tenant, 0) / total_served
                    if total_served
                    else None
                ),
                "weighted_service": weighted[tenant],
            }
            for tenant, weight in result.tenant_weights.items()
        },
        "backlogged": {
            "jain_mean": backlogged.mean_jain,
            "jain_min": backlogged.min_jain,
            "num_intervals": len(backlogged.intervals),
            "covered_s": backlogged.covered_s,
            "covered_fraction": backlogged.covered_s / result.duration_s,
            "window_s": window_s,
        },
    }


def fairness_note(
    policy: str | None, num_intervals: int, covered_s: float, duration_s: float
) -> str:
    """What a configuration's per-tenant figures can and cannot say, in one sentence (pure):
    which policy ran, whether it is a fairness policy, and how much of the run had >= 2
    tenants backlogged and served (the only time fairness is owed)."""
    if policy is None:
        policy_text = "policy not recorded: read per-tenant figures as service, not fairness"
    elif policy in FAIRNESS_POLICIES:
        policy_text = f"policy {policy} ({POLICY_DESCRIPTIONS[policy]}) is a fairness policy"
    else:
        description = POLICY_DESCRIPTIONS.get(policy, "unknown policy")
        policy_text = (
            f"policy {policy} ({description}) is not a fairness policy: per-tenant figures "
            "show service, not fairness"
        )
    if num_intervals == 0:
        backlog_text = (
            "no interval had two or more tenants backlogged and served, so fairness over "
            "backlogged intervals was not measured"
        )
    else:
        backlog_text = (
            f"two or more tenants were backlogged and served for {covered_s:.1f} s of "
            f"{duration_s:.1f} s ({covered_s / duration_s:.0%}, {num_intervals} intervals)"
        )
    return f"{policy_text}; {backlog_text}."


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator
