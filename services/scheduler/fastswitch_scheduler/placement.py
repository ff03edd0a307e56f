"""Late placement: which unplaced requests each worker may take this tick. Pure.

A request is placed on a worker (its frontend stages it there) only when that worker chooses to
run it now: into free room, or, under vtc, by preempting an over-served tenant there. Until
then it waits in the scheduler, unplaced, so it goes to whichever worker frees up first and no
request queues behind a busy worker while another idles; the cluster-wide order is the
policy's (counters under vtc), the same on every worker. A request placed and running, or
preempted to a worker's host memory, stays with that worker (its KV is there).

KV affinity: a conversation's next turn is reserved for the worker holding its KV (the kvstore)
when that worker has room for it now; otherwise any worker may take it, and the one that does
recomputes the turn's whole prompt (there is no worker-to-worker KV fetch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastswitch_scheduler.requests import ClusterRequest, Phase


@dataclass
class WorkerRoom:
    """What a worker's running requests leave: mutated as requests are reserved for it."""

    worker_id: str
    capacity_tokens: int
    num_running: int
    used_tokens: int

    def fits(self, need_tokens: int, max_running: int) -> bool:
        return self.num_running < max_running and self.used_tokens + need_tokens <= self.capacity_tokens

    @property
    def free_fraction(self) -> float:
        return 1.0 - self.used_tokens / max(1, self.capacity_tokens)


def room_of(worker_id: str, capacity_tokens: int, placed: Sequence[ClusterRequest],
            headroom_tokens: int) -> WorkerRoom:
    running = [r for r in placed if r.phase is Phase.RUNNING]
    return WorkerRoom(worker_id, capacity_tokens, len(running),
                      sum(r.kv_tokens_needed(headroom_tokens) for r in running))


def offers(pool: Sequence[ClusterRequest], rooms: dict[str, WorkerRoom], *,
           max_running: int, headroom_tokens: int,
           key: Callable[[ClusterRequest], tuple]) -> tuple[list[str], dict[str, list[ClusterRequest]]]:
    """Pure but for the rooms it reserves in. Returns the workers in the order they choose
    (most free room first: the least loaded takes the head of the line) and, per worker, the
    unplaced requests it may take: the ones reserved for it (its conversations' turns, where it
    has room), then the open pool in policy order, at most `max_running` per tenant (one tick
    cannot run more of a tenant on one worker)."""
    reserved: dict[str, list[ClusterRequest]] = {worker_id: [] for worker_id in rooms}
    open_pool: list[ClusterRequest] = []
    for request in sorted(pool, key=key):
        room = rooms.get(request.kv_holder_id or "")
        need = request.kv_tokens_needed(headroom_tokens)
        if room is not None and room.fits(need, max_running):
            reserved[room.worker_id].append(request)
            room.num_running += 1
            room.used_tokens += need
        else:
            open_pool.append(request)
    per_tenant: dict[str, int] = {}
    capped = []
    for request in open_pool:
        name = request.tenant.name
        if per_tenant.get(name, 0) < max_running:
            per_tenant[name] = per_tenant.get(name, 0) + 1
            capped.append(request)
    order = sorted(rooms, key=lambda worker_id: -rooms[worker_id].free_fraction)
    return order, {worker_id: reserved[worker_id] + capped for worker_id in rooms}
