"""The figures of benchmarks/fairness.py from its samples (pure): per-window Jain's index of
weighted service, the largest counter gap between backlogged tenants, shares, switch rates,
idle workers while requests queue, and a newcomer's time to its fair share."""

from __future__ import annotations

from collections.abc import Sequence

from fastswitch_bench.stats import StatsError, jain_index, percentiles

BACKLOG_SAMPLES = 4  # a tenant is backlogged after this many samples in a row with a queue


def weighted_service(a: dict, b: dict, name: str, input_weight: float, output_weight: float) -> float:
    """Weighted tokens served to `name` between samples a and b, divided by its weight."""
    ta, tb = a["tenants"].get(name), b["tenants"].get(name)
    if ta is None or tb is None:
        return 0.0
    cost = (input_weight * (tb["prompt"] - ta["prompt"])
            + output_weight * (tb["generated"] - ta["generated"]))
    return cost / tb["weight"]


def at(samples: Sequence[dict], t: float) -> dict:
    """The first sample at or after t (the last one if none)."""
    return next((s for s in samples if s["t"] >= t), samples[-1])


def window_jain(samples: Sequence[dict], names: Sequence[str], *, start_s: float, end_s: float,
                window_s: float, input_weight: float, output_weight: float) -> list[float]:
    """Jain's index of the tenants' weighted service in each whole window in [start_s, end_s)."""
    values = []
    t = start_s
    while t + window_s <= end_s + 1e-9:
        a, b = at(samples, t), at(samples, t + window_s)
        served = [weighted_service(a, b, n, input_weight, output_weight) for n in names]
        try:
            values.append(jain_index(served))
        except StatsError:
            pass  # nobody served in the window: no index
        t += window_s
    return values


def max_backlogged_gap(samples: Sequence[dict], names: Sequence[str], *, start_s: float) -> float:
    """The largest counter gap between tenants backlogged (a queue in BACKLOG_SAMPLES samples
    in a row) at the same sample, from start_s on."""
    streak = dict.fromkeys(names, 0)
    gap = 0.0
    for sample in samples:
        for name in names:
            tenant = sample["tenants"].get(name)
            streak[name] = streak[name] + 1 if tenant and tenant["queued"] > 0 else 0
        if sample["t"] < start_s:
            continue
        counters = [sample["tenants"][n]["virtual_tokens"] for n in names if streak[n] >= BACKLOG_SAMPLES]
        if len(counters) > 1:
            gap = max(gap, max(counters) - min(counters))
    return gap


def shares(samples: Sequence[dict], names: Sequence[str], *, start_s: float, end_s: float,
           input_weight: float, output_weight: float) -> dict[str, float]:
    a, b = at(samples, start_s), at(samples, end_s)
    served = {n: weighted_service(a, b, n, input_weight, output_weight) for n in names}
    total = sum(served.values()) or 1.0
    return {n: v / total for n, v in served.items()}


def switches(samples: Sequence[dict], *, start_s: float, end_s: float) -> dict[str, float]:
    a, b = at(samples, start_s), at(samples, end_s)
    swap_outs = (sum(w["swap_outs"] for w in b["workers"]) - sum(w["swap_outs"] for w in a["workers"]))
    recomputes = (sum(w["recomputes"] for w in b["workers"]) - sum(w["recomputes"] for w in a["workers"]))
    # Of the swap-outs, those the workers made themselves (GPU KV ran out between ticks).
    exhausted = (sum(w["kv_exhausted"] for w in b["workers"]) - sum(w["kv_exhausted"] for w in a["workers"]))
    seconds = max(1e-9, b["t"] - a["t"])
    return {"num_swap_outs": swap_outs, "swap_outs_per_s": swap_outs / seconds,
            "num_recomputes": recomputes, "num_worker_kv_exhausted": exhausted}


def idle_while_queued(samples: Sequence[dict], *, start_s: float) -> dict[str, float]:
    """Fraction of samples in which a worker ran nothing while requests were queued, in this
    sample and the one before (a request that arrived since the last tick is not a queue),
    and each worker's mean number of running requests."""
    used = [s for s in samples if s["t"] >= start_s and s["workers"]]

    def idle_ids(sample: dict) -> set[str]:
        if sample["num_queued"] == 0:
            return set()
        return {w["id"] for w in sample["workers"] if w["running"] == 0}

    idle = sum(1 for before, now in zip(used, used[1:], strict=False) if idle_ids(before) & idle_ids(now))
    workers = sorted({w["id"] for s in used for w in s["workers"]})
    mean_running = {wid: sum(w["running"] for s in used for w in s["workers"] if w["id"] == wid)
                    / max(1, len(used)) for wid in workers}
    return {"idle_while_queued_fraction": idle / max(1, len(used)), "mean_running": mean_running}


def time_to_share(samples: Sequence[dict], name: str, names: Sequence[str], *, arrival_s: float,
                  window_s: float, input_weight: float, output_weight: float,
                  fraction: float = 0.9) -> float | None:
    """Seconds from arrival_s until `name`'s share of weighted service over a trailing window
    first reaches `fraction` of its fair share (its weight over the tenants' weights); None
    if it never does."""
    weights = {n: samples[-1]["tenants"][n]["weight"] for n in names if n in samples[-1]["tenants"]}
    fair = weights[name] / sum(weights.values())
    for sample in samples:
        if sample["t"] < arrival_s + window_s:
            continue
        a = at(samples, sample["t"] - window_s)
        served = {n: weighted_service(a, sample, n, input_weight, output_weight) * weights[n]
                  for n in weights}
        total = sum(served.values())
        if total > 0 and served[name] / total >= fraction * fair:
            return sample["t"] - arrival_s
    return None


def tails(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return percentiles(values, (50.0, 99.0))
