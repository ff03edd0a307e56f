"""VTC with few switches: which requests hold a worker's GPU slots, preempting only where the
fairness bound needs it. Pure: the core feeds it one worker's requests (running, waiting there,
and unplaced ones it may take) and applies the difference.

The rule, per worker and tick (counters c, in virtual tokens: weighted service / weight):
1. Keep every running request. If they no longer fit (their KV grew, a lower limit), drop the
   cheapest victims (below) until they do: reason "kv_pressure". "Fit" counts each request's
   KV plus the growth it may make before the next tick (kv_headroom_tokens).
2. Waiting requests in counter order (lowest tenant first, oldest request first within it):
   admit each that fits with room to grow: every request chosen so far plus this one, each
   counted with min(tokens left, kv_admit_headroom_tokens) of growth. Admitting at this lower
   watermark and evicting only at the higher one (1.) is KV's own hysteresis: without it a
   tight worker fills up, its requests outgrow it, one is swapped out, the room refilled, and
   so on (the churn every policy had). Admitting charges its prompt at once (projected here,
   charged by the core: counters.py), so one tick cannot admit a tenant's many prompts on a
   stale counter.
3. A waiting request w of tenant j that does not fit may preempt running requests r of tenant
   i only when c_i - c_j > H (vtc_preempt_threshold: the hysteresis) and r is preemptible:
   - its tenant was served at least Q virtual tokens since r (re)started (vtc_quantum, Q <= H:
     a request just resumed is not thrown out again before it did useful work);
   - r has more than G tokens left to generate (vtc_finish_guard_tokens: a request about to
     finish frees its slot anyway, preempting it would cost two switches for nothing).
   Victims go most-served tenant first, then cheapest switch first: the fewest tokens not
   already on the host (a request swapped before keeps a valid host copy: only its newer
   tokens move), then the shortest context. Just enough victims to fit w.
4. Nothing else is preempted: no request moves while every tenant is within H of the others.

Guarantee (tested on this function: tests/services/scheduler/test_policy_vtc.py). After the
plan, for every tenant i with a preemptible running request and every tenant j with a request
w waiting that would fit in place of i's preemptible requests: c_i - c_j <= H. So, for two
tenants i, j backlogged on the same worker (j always has a request waiting), at any moment

    c_i - c_j <= B = H + F + U,   F = max_running * G * w_out / min_weight,
                                  U = (w_in * P_max + w_out * M_max) / min_weight

F is what i's finishing (guarded) requests may still add; U covers what a tenant is charged
between the scheduler's view and its next decision (a tick plus one progress report of the
workers serves a tenant less than one whole request, P_max prompt and M_max output tokens, at
the tiny-to-medium models this runs; the prompt part is charged at admission, inside the
decision). The quantum adds nothing: a request that started as the lowest waiting tenant (or
into free room while j had none waiting) starts with c_i <= c_j, so while protected
c_i - c_j < Q <= H. A tenant that starts waiting starts at most H below the least-served
tenant already waiting (counters.cap_credit: what it did not ask for is not owed to it), so the
bound holds from a tenant's first tick of backlog. Across workers: the counters are the
cluster's (one scheduler) and a request not yet placed is offered to every worker (placement.py:
placed only where it fits or where this rule preempts for it), so for requests waiting unplaced
the bound holds cluster-wide. A preempted request waits for its own worker (its KV is in that
worker's host memory): for it the bound holds against the tenants running on that worker. Each switch of a pair
moves the gap by about 2H before the next: switches per second fall as 1/H while the bound
grows as H, which is the trade the threshold makes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastswitch_scheduler.requests import ClusterRequest, Phase

FAIRNESS = "fairness"
KV_PRESSURE = "kv_pressure"


@dataclass(frozen=True)
class Choice:
    """Who runs on the worker after this tick, and why each preempted request leaves."""

    chosen: list[ClusterRequest]
    preempt_reasons: dict[str, str]  # request id -> FAIRNESS | KV_PRESSURE


def fairness_bound(*, threshold: float, finish_guard_tokens: int, max_running: int,
                   input_weight: float, output_weight: float, min_weight: float,
                   max_prompt_tokens: int, max_output_tokens: int) -> float:
    """B of the docstring: the largest counter gap between backlogged tenants."""
    finishing = max_running * finish_guard_tokens * output_weight / min_weight
    one_request = (input_weight * max_prompt_tokens + output_weight * max_output_tokens) / min_weight
    return threshold + finishing + one_request


def select_vtc(candidates: Sequence[ClusterRequest], *, capacity_tokens: int, max_running: int,
               headroom_tokens: int, admit_headroom_tokens: int, threshold: float, quantum: float,
               finish_guard_tokens: int, prompt_cost: Callable[[ClusterRequest], float]) -> Choice:
    """Pure: the rule of the module docstring. `prompt_cost(r)`: the virtual tokens admitting r
    charges its tenant (0 when its prompt was charged already)."""
    projected: dict[str, float] = {}
    admit_headroom_tokens = max(admit_headroom_tokens, headroom_tokens)

    def counter(request: ClusterRequest) -> float:
        return projected.get(request.tenant.name, request.tenant.virtual_tokens)

    def need(request: ClusterRequest) -> int:  # to keep running
        return request.kv_tokens_needed(headroom_tokens)

    def admit_need(request: ClusterRequest) -> int:  # to start (or to let another start)
        return request.kv_tokens_needed(admit_headroom_tokens)

    kept = [r for r in candidates if r.phase is Phase.RUNNING]
    used_tokens = sum(map(need, kept))
    reasons: dict[str, str] = {}

    def victim_order(r: ClusterRequest) -> tuple:
        return (-counter(r), r.num_remaining_tokens <= finish_guard_tokens,
                r.switch_cost_tokens, r.num_tokens)

    while kept and (len(kept) > max_running or used_tokens > capacity_tokens):
        victim = min(kept, key=victim_order)
        kept.remove(victim)
        used_tokens -= need(victim)
        reasons[victim.request_id] = KV_PRESSURE

    queues: dict[str, deque[ClusterRequest]] = {}
    for request in sorted((r for r in candidates if r.phase is not Phase.RUNNING),
                          key=lambda r: r.arrival_s):
        queues.setdefault(request.tenant.name, deque()).append(request)
    admitted: set[int] = set()
    admit_used_tokens = sum(map(admit_need, kept))

    def is_preemptible(r: ClusterRequest, waiting_counter: float) -> bool:
        return (id(r) not in admitted and counter(r) - waiting_counter > threshold
                and r.num_remaining_tokens > finish_guard_tokens
                and r.tenant.virtual_tokens - r.counter_at_start >= quantum)

    while queues:
        name = min(queues, key=lambda n: (counter(queues[n][0]), queues[n][0].arrival_s))
        queue = queues[name]
        waiting = queue.popleft()
        if not queue:
            del queues[name]
        size = admit_need(waiting)
        if size > capacity_tokens:
            continue  # never fits here (the worker refuses what exceeds its KV)
        fits = len(kept) < max_running and admit_used_tokens + size <= capacity_tokens
        if not fits:
            waiting_counter = counter(waiting)
            victims = sorted((r for r in kept if is_preemptible(r, waiting_counter)),
                             key=victim_order)
            if not victims:
                # Later waiting requests have counters at least as high: their victims would
                # be a subset of none. Only free room could still take one: is there any?
                if len(kept) >= max_running:
                    break
                continue
            picked, num_slots = [], max_running - len(kept)
            num_free = capacity_tokens - admit_used_tokens
            for victim in victims:
                if num_slots >= 1 and num_free >= size:
                    break
                picked.append(victim)
                num_slots, num_free = num_slots + 1, num_free + admit_need(victim)
            if not (num_slots >= 1 and num_free >= size):
                continue  # even every victim would not make room for this one
            for victim in picked:
                kept.remove(victim)
                used_tokens -= need(victim)
                admit_used_tokens -= admit_need(victim)
                reasons[victim.request_id] = FAIRNESS
        kept.append(waiting)
        admitted.add(id(waiting))
        used_tokens += need(waiting)
        admit_used_tokens += size
        projected[waiting.tenant.name] = counter(waiting) + prompt_cost(waiting)
    return Choice(kept, reasons)
