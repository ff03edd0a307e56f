"""Which requests should hold GPU slots on a worker: ordering per policy, packing by capacity.

Pure functions: the core feeds them the requests assigned to one worker and applies the
difference between the result and what runs now as admit/resume/preempt commands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastswitch_scheduler.requests import ClusterRequest, Phase

OrderKey = Callable[[ClusterRequest], tuple]


@dataclass(frozen=True)
class PolicyParams:
    name: str  # vtc | fcfs | priority | trace
    vtc_preempt_threshold: float = 64.0
    max_running: int = 32
    kv_headroom_tokens: int = 32


def order_key(params: PolicyParams, trace_priorities: dict[str, int]) -> OrderKey:
    """Sort key: smaller runs first. Running requests get the VTC hysteresis bonus."""
    if params.name == "vtc":
        def key(r: ClusterRequest) -> tuple:
            bonus = params.vtc_preempt_threshold if r.phase is Phase.RUNNING else 0.0
            return (r.tenant.virtual_tokens - bonus, r.arrival_s)
    elif params.name == "fcfs":
        def key(r: ClusterRequest) -> tuple:
            return (r.arrival_s,)
    elif params.name == "priority":
        def key(r: ClusterRequest) -> tuple:
            return (-r.priority, r.arrival_s)
    elif params.name == "trace":
        def key(r: ClusterRequest) -> tuple:
            return (-trace_priorities.get(r.request_id, 0), r.arrival_s)
    else:
        raise ValueError(f"unknown policy {params.name!r}")
    return key


def select_running(candidates: Sequence[ClusterRequest], *, key: OrderKey,
                   capacity_tokens: int, params: PolicyParams) -> list[ClusterRequest]:
    """Greedy in policy order: take each request whose KV still fits, up to max_running."""
    chosen: list[ClusterRequest] = []
    used_tokens = 0
    for request in sorted(candidates, key=key):
        if len(chosen) >= params.max_running:
            break
        need = request.kv_tokens_needed(params.kv_headroom_tokens)
        if used_tokens + need <= capacity_tokens:
            chosen.append(request)
            used_tokens += need
    return chosen


@dataclass(frozen=True)
class WorkerPlan:
    to_admit: tuple[ClusterRequest, ...]
    to_resume: tuple[ClusterRequest, ...]
    to_preempt: tuple[ClusterRequest, ...]


def plan_worker(candidates: Sequence[ClusterRequest], chosen: Sequence[ClusterRequest]) -> WorkerPlan:
    """The commands that turn what runs now into `chosen` (pure)."""
    chosen_set = set(map(id, chosen))
    to_admit, to_resume, to_preempt = [], [], []
    for request in candidates:
        is_chosen = id(request) in chosen_set
        if is_chosen and request.phase is not Phase.RUNNING:
            (to_resume if request.is_admitted else to_admit).append(request)
        elif not is_chosen and request.phase is Phase.RUNNING:
            to_preempt.append(request)
    return WorkerPlan(tuple(to_admit), tuple(to_resume), tuple(to_preempt))
