"""Where requests' time went: the per-request phase times the frontend reports with each
final response (fastswitch.v1.RequestTiming), summed up for the report (pure).

The report's `time_breakdown` per configuration holds the mean of every phase over the
completed requests, and the phases of two tail requests: the one at the p99 of TTFT and the
one at the p99 of end-to-end latency (nearest rank, client-side times), so a reader sees
whether a tail was spent queued, swapped or computing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The phases RequestTiming carries, as `<phase>_ms` fields, in the order a request meets them.
PHASES: tuple[str, ...] = (
    "placement_wait",  # arrived, not yet placed: the next tick, or queued for a slot
    "admission_wait",  # placed, its worker's engine does not hold it yet (admit at a tick)
    "engine_queue",  # in the engine's queue: batch room, or recompute after a preemption
    "running",  # in the engine's batch
    "swapping_out",
    "swapped_out",  # KV only in host memory, waiting to be resumed
    "swapping_in",
)
PHASE_LABELS = {
    "placement_wait": "queued at the scheduler (next tick or a slot)",
    "admission_wait": "placed, waiting for admission",
    "engine_queue": "in the engine's queue",
    "running": "running (computing)",
    "swapping_out": "swapping out",
    "swapped_out": "swapped out",
    "swapping_in": "swapping in",
}
BREAKDOWN_NOTE = (
    "Phase times are measured by the frontend from the worker's state changes (one engine "
    "step's granularity: a phase shorter than a step folds into the next), from the request's "
    "arrival at the frontend to its last token; client-side TTFT and e2e add the client's "
    "network and stream time. The p99 requests are picked by nearest rank of client-side "
    "TTFT and end-to-end latency among completed requests."
)


@dataclass(frozen=True)
class RequestPhases:
    """One completed request: client-side latencies and the frontend's phase times."""

    request_id: str
    ttft_ms: float
    e2e_ms: float
    phases_ms: Mapping[str, float]
    num_preemptions: int = 0


def nearest_rank(values: Sequence[float], q: float) -> int:
    """Index (into `values`) of the sample at percentile q by nearest rank (pure)."""
    if not values:
        raise ValueError("nearest rank of no values")
    order = sorted(range(len(values)), key=lambda i: values[i])
    rank = max(1, math.ceil(q / 100 * len(values)))
    return order[rank - 1]


def time_breakdown(requests: Sequence[RequestPhases]) -> dict[str, object]:
    """The report's `time_breakdown` for one configuration (pure); null figures when no
    request completed."""
    if not requests:
        return {"num_requests": 0, "phases": list(PHASES), "mean_ms": None,
                "mean_share": None, "p99_ttft_request": None, "p99_e2e_request": None}
    mean_ms = {p: sum(r.phases_ms.get(p, 0.0) for r in requests) / len(requests) for p in PHASES}
    total_ms = sum(mean_ms.values())
    return {
        "num_requests": len(requests),
        "phases": list(PHASES),
        "mean_ms": mean_ms,
        "mean_share": {p: (mean_ms[p] / total_ms if total_ms else None) for p in PHASES},
        "p99_ttft_request": _describe(requests[nearest_rank([r.ttft_ms for r in requests], 99)]),
        "p99_e2e_request": _describe(requests[nearest_rank([r.e2e_ms for r in requests], 99)]),
    }


def _describe(request: RequestPhases) -> dict[str, object]:
    return {"request_id": request.request_id, "ttft_ms": request.ttft_ms,
            "e2e_ms": request.e2e_ms, "num_preemptions": request.num_preemptions,
            "phases_ms": {p: request.phases_ms.get(p, 0.0) for p in PHASES}}


def breakdown_markdown(configs: Mapping[str, Mapping[str, object]]) -> list[str]:
    """report.md's breakdown section: one row per phase, per configuration the mean and the
    two p99 requests (pure). Configurations without a breakdown are left out."""
    with_data = {name: figures["time_breakdown"] for name, figures in configs.items()
                 if (figures.get("time_breakdown") or {}).get("num_requests")}
    if not with_data:
        return []
    header = ["phase (ms)"]
    for name in with_data:
        header += [f"{name} mean", f"{name} p99-TTFT req", f"{name} p99-e2e req"]
    lines = ["## Where the time went", "", BREAKDOWN_NOTE, "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def row(label: str, value_of) -> str:
        cells = [label]
        for breakdown in with_data.values():
            cells += [value_of(breakdown["mean_ms"], None),
                      value_of(breakdown["p99_ttft_request"]["phases_ms"],
                               breakdown["p99_ttft_request"]),
                      value_of(breakdown["p99_e2e_request"]["phases_ms"],
                               breakdown["p99_e2e_request"])]
        return "| " + " | ".join(cells) + " |"

    for phase in PHASES:
        lines.append(row(PHASE_LABELS[phase], lambda ms, _, p=phase: f"{ms[p]:,.1f}"))
    lines.append(row("client TTFT", lambda _, req: "" if req is None else f"{req['ttft_ms']:,.1f}"))
    lines.append(row("client e2e", lambda _, req: "" if req is None else f"{req['e2e_ms']:,.1f}"))
    lines.append(row("preemptions", lambda _, req: "" if req is None else str(req["num_preemptions"])))
    lines.append("")
    for name, breakdown in with_data.items():
        lines.append(f"- {name}: " + dominant_phases_sentence(breakdown))
    lines.append("")
    return lines


def dominant_phases_sentence(breakdown: Mapping[str, object]) -> str:
    """Where the p99 requests' time went, in words: their two largest phases (pure)."""
    parts = []
    for key, label in (("p99_ttft_request", "p99-TTFT request"),
                       ("p99_e2e_request", "p99-e2e request")):
        request = breakdown[key]
        phases = request["phases_ms"]
        total = sum(phases.values()) or 1.0
        top = sorted(phases, key=phases.get, reverse=True)[:2]
        shares = ", ".join(f"{PHASE_LABELS[p]} {phases[p] / total:.0%}" for p in top)
        parts.append(f"the {label} ({request['request_id']}) spent its time mostly {shares}")
    return "; ".join(parts) + "."
