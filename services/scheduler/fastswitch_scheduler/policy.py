"""Which requests should hold GPU slots on a worker: ordering per policy, packing by capacity.

Pure functions: the core feeds them the requests assigned to one worker (and unplaced ones it
may take) and applies the difference between the result and what runs now as
admit/resume/preempt commands. vtc has a rule of its own that switches only where its
fairness bound needs it (policy_vtc.py, where the bound is stated); fcfs, priority and trace
pack greedily in their order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastswitch_scheduler.policy_vtc import KV_PRESSURE, Choice, select_vtc
from fastswitch_scheduler.requests import ClusterRequest, Phase

PRIORITY = "priority"  # an order-based policy (fcfs, priority, trace) preferred another request

OrderKey = Callable[[ClusterRequest], tuple]


@dataclass(frozen=True)
class PolicyParams:
    name: str  # vtc | fcfs | priority | trace
    vtc_preempt_threshold: float = 1024.0  # H of policy_vtc.py
    max_running: int = 32
    kv_headroom_tokens: int = 32  # growth a running request keeps room for
    kv_admit_headroom_tokens: int = 128  # growth every request must have room for to admit one
    vtc_quantum: float = 128.0  # Q of policy_vtc.py (virtual tokens, <= H)
    vtc_finish_guard_tokens: int = 8  # G of policy_vtc.py


def order_key(params: PolicyParams, trace_priorities: dict[str, int]) -> OrderKey:
    """Sort key: smaller runs first (placement order of unplaced requests, resume order).
    Running requests get the VTC hysteresis bonus."""
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
    """Greedy in policy order: take each request whose KV still fits, up to max_running. A
    running request fits with kv_headroom_tokens of growth; a request to start needs every
    chosen one to have room for kv_admit_headroom_tokens (KV's hysteresis: policy_vtc.py)."""
    chosen: list[ClusterRequest] = []
    used_tokens = admit_used_tokens = 0
    admit_headroom = max(params.kv_admit_headroom_tokens, params.kv_headroom_tokens)
    for request in sorted(candidates, key=key):
        if len(chosen) >= params.max_running:
            break
        need = request.kv_tokens_needed(params.kv_headroom_tokens)
        admit_need = request.kv_tokens_needed(admit_headroom)
        is_running = request.phase is Phase.RUNNING
        if (used_tokens + need <= capacity_tokens if is_running
                else admit_used_tokens + admit_need <= capacity_tokens):
            chosen.append(request)
            used_tokens += need
            admit_used_tokens += admit_need
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


def choose(candidates: Sequence[ClusterRequest], *, key: OrderKey, capacity_tokens: int,
           params: PolicyParams, prompt_cost: Callable[[ClusterRequest], float]) -> Choice:
    """Pure: who runs on one worker after this tick, per the policy, with why each request
    that ran and no longer does was preempted."""
    if params.name == "vtc":
        return select_vtc(candidates, capacity_tokens=capacity_tokens,
                          max_running=params.max_running, headroom_tokens=params.kv_headroom_tokens,
                          admit_headroom_tokens=params.kv_admit_headroom_tokens,
                          threshold=params.vtc_preempt_threshold, quantum=params.vtc_quantum,
                          finish_guard_tokens=params.vtc_finish_guard_tokens,
                          prompt_cost=prompt_cost)
    chosen = select_running(candidates, key=key, capacity_tokens=capacity_tokens, params=params)
    running = [r for r in candidates if r.phase is Phase.RUNNING]
    # The running requests alone did not fit: KV pressure, whatever the order chose.
    is_pressure = (len(running) > params.max_running or capacity_tokens < sum(
        r.kv_tokens_needed(params.kv_headroom_tokens) for r in running))
    chosen_ids = {id(r) for r in chosen}
    return Choice(chosen, {r.request_id: KV_PRESSURE if is_pressure else PRIORITY
                           for r in running if id(r) not in chosen_ids})
