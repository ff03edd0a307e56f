"""Local batching policy of one worker: who computes this step, what swaps start.

`schedule()` turns the queues into a frozen SchedulerOutput (batch + swap plans) and makes the
matching allocations and state transitions; the engine executes it. Preempt/resume requests from
outside are applied here so that every transition happens at one point in the step.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from fastswitch_worker.engine.block_allocator import OutOfBlocksError
from fastswitch_worker.engine.kv_manager import KVManager, SwapDirection, SwapPlan
from fastswitch_worker.engine.sequence import Request, RequestStatus


@dataclass(frozen=True)
class ScheduledChunk:
    request: Request
    num_new_tokens: int  # prefill chunk length, or 1 for a decode

    @property
    def is_sampling(self) -> bool:
        """True when this chunk reaches the last token, so its logits give the next token."""
        return self.request.num_computed_tokens + self.num_new_tokens == self.request.num_tokens


@dataclass(frozen=True)
class SchedulerOutput:
    chunks: tuple[ScheduledChunk, ...]
    # Swap plans in the order they were made. Blocking ones must run in this order: a plan
    # may reuse blocks an earlier plan of this step freed (after the earlier one read them).
    swaps: tuple[SwapPlan, ...]
    # Copies the engine must finish before the forward pass: swap-ins whose requests are in
    # this batch, and swap-outs whose GPU blocks this batch already reuses.
    blocking_ids: frozenset[str]
    # Resumes that arrived during a swap-out: the copy is cancelled, the GPU KV kept.
    cancelled_swap_out_ids: frozenset[str]
    # Preempted without a copy because host memory was full: they recompute on resume.
    recomputed_ids: tuple[str, ...]
    # Preempted by the worker itself because GPU KV ran out (lowest priority first).
    kv_exhausted_ids: tuple[str, ...] = ()

    @property
    def swap_outs(self) -> tuple[SwapPlan, ...]:
        return tuple(p for p in self.swaps if p.direction is SwapDirection.OUT)

    @property
    def swap_ins(self) -> tuple[SwapPlan, ...]:
        return tuple(p for p in self.swaps if p.direction is SwapDirection.IN)

    def __post_init__(self) -> None:
        out_ids = {p.request_id for p in self.swap_outs}
        in_ids = {p.request_id for p in self.swap_ins}
        chunk_ids = [c.request.request_id for c in self.chunks]
        assert not out_ids & in_ids, "a request is swapped in and out in one step"
        assert len(set(chunk_ids)) == len(chunk_ids), "a request is scheduled twice"
        assert not out_ids & set(chunk_ids), "a swapping-out request is computed"
        assert self.blocking_ids <= in_ids | out_ids

    @property
    def num_batched_tokens(self) -> int:
        return sum(c.num_new_tokens for c in self.chunks)


@dataclass(frozen=True)
class SchedulerLimits:
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    is_sync_swaps: bool = False  # baseline: copies finish before the forward pass
    # Wait for a swap-in instead of overlapping it when it is this small and the batch is small.
    blocking_swap_in_max_blocks: int = 8
    blocking_swap_in_max_batch: int = 2


class Scheduler:
    """Queues and policy. All methods mutate; engine thread only."""

    def __init__(self, kv: KVManager, limits: SchedulerLimits) -> None:
        self.kv = kv
        self.limits = limits
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.parked: dict[str, Request] = {}  # SWAPPING_OUT / SWAPPED / SWAPPING_IN
        self.priorities: dict[str, int] = {}
        self._pending_preempts: dict[str, Request] = {}
        self._pending_resumes: dict[str, Request] = {}

    # ---- commands -------------------------------------------------------------------------
    def add(self, request: Request) -> None:
        self.kv.claim_conversation_kv(request)
        self.waiting.append(request)

    def request_preempt(self, request: Request) -> None:
        self._pending_resumes.pop(request.request_id, None)
        self._pending_preempts[request.request_id] = request

    def request_resume(self, request: Request) -> None:
        self._pending_preempts.pop(request.request_id, None)
        self._pending_resumes[request.request_id] = request

    def remove(self, request: Request) -> None:
        """Forget a finished or aborted request in every queue."""
        rid = request.request_id
        self.priorities.pop(rid, None)
        self._pending_preempts.pop(rid, None)
        self._pending_resumes.pop(rid, None)
        self.parked.pop(rid, None)
        if request in self.running:
            self.running.remove(request)
        if request in self.waiting:
            self.waiting.remove(request)

    def has_work(self) -> bool:
        """Something to compute or to start: parked requests alone are no work."""
        return bool(self.waiting or self.running or self._pending_resumes
                    or self._pending_preempts)

    # ---- the step -------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        swaps: list[SwapPlan] = []  # both directions, in planning order
        blocking: set[str] = set()
        cancelled: set[str] = set()
        recomputed: list[str] = []
        self._kv_exhausted: list[str] = []

        for request in list(self._pending_preempts.values()):
            if self._preempt(request, swaps, recomputed, blocking):
                del self._pending_preempts[request.request_id]
        for request in list(self._pending_resumes.values()):
            if request.status is RequestStatus.SWAPPING_OUT:
                cancelled.add(request.request_id)
                request.set_status(RequestStatus.RUNNING)
                self.parked.pop(request.request_id)
                self.running.append(request)
            elif request.status is RequestStatus.SWAPPED:
                if not self._start_swap_in(request, swaps, blocking):
                    continue  # no GPU room yet; retried next step
            del self._pending_resumes[request.request_id]

        chunks: list[ScheduledChunk] = []
        budget = self.limits.max_num_batched_tokens
        for request in list(self.running):
            if budget == 0 or len(chunks) >= self.limits.max_num_seqs:
                break
            if request not in self.running:
                continue  # preempted below to make room
            num_new = min(request.num_uncomputed_tokens, budget)
            if not self._reserve_or_preempt(request, num_new, chunks, swaps, recomputed,
                                            blocking):
                continue
            chunks.append(ScheduledChunk(request, num_new))
            budget -= num_new

        while self.waiting and budget > 0 and len(chunks) < self.limits.max_num_seqs:
            request = self.waiting[0]
            if request.num_host_valid_tokens > 0:  # a new turn reusing host KV: swap it in
                if not self._start_swap_in(request, swaps, blocking, from_waiting=True):
                    break
                continue
            num_new = min(request.num_uncomputed_tokens, budget)
            if not self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
                break  # admission never preempts: the cluster scheduler decides who runs
            self.waiting.popleft()
            request.set_status(RequestStatus.RUNNING)
            self.running.append(request)
            chunks.append(ScheduledChunk(request, num_new))
            budget -= num_new

        # Requests that a blocking swap-in made runnable join this very batch.
        scheduled = {c.request.request_id for c in chunks}
        for plan in swaps:
            if (plan.direction is SwapDirection.IN and plan.request_id in blocking
                    and plan.request_id not in scheduled and budget > 0
                    and len(chunks) < self.limits.max_num_seqs):
                request = next(r for r in self.running if r.request_id == plan.request_id)
                num_new = min(request.num_uncomputed_tokens, budget)
                if self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
                    chunks.append(ScheduledChunk(request, num_new))
                    budget -= num_new
        return SchedulerOutput(tuple(chunks), tuple(swaps),
                               frozenset(blocking), frozenset(cancelled), tuple(recomputed),
                               tuple(self._kv_exhausted))


    # ---- transitions ----------------------------------------------------------------------
    def _preempt(self, request: Request, swaps: list[SwapPlan], recomputed: list[str],
                 blocking: set[str]) -> bool:
        """Start moving a request off the GPU; False when it must wait (swap-in in flight)."""
        status = request.status
        if status is RequestStatus.SWAPPING_IN or request.num_inflight_copies:
            return False  # retried next step, once its copy is done
        if status is RequestStatus.WAITING:
            self.waiting.remove(request)
            request.set_status(RequestStatus.SWAPPED)  # holds no GPU KV: nothing to copy
            self.parked[request.request_id] = request
        elif status is RequestStatus.RUNNING:
            self._swap_out(request, swaps, recomputed, blocking, is_urgent=False)
        return True

    def _swap_out(self, request: Request, swaps: list[SwapPlan], recomputed: list[str],
                  blocking: set[str], *, is_urgent: bool) -> None:
        """Plan a swap-out. When urgent or in sync mode the GPU blocks are freed now and the
        plan is blocking: the engine completes the copy before the forward pass."""
        self.running.remove(request)
        request.num_preemptions += 1
        if request.num_computed_tokens == 0:
            self.kv.free_gpu(request)
            request.set_status(RequestStatus.SWAPPED)
            self.parked[request.request_id] = request
            return
        try:
            plan = self.kv.plan_swap_out(request)
        except OutOfBlocksError:  # host memory full even after eviction: recompute later
            self.kv.release(request)
            request.num_computed_tokens = 0
            request.set_status(RequestStatus.SWAPPED)
            self.parked[request.request_id] = request
            recomputed.append(request.request_id)
            return
        swaps.append(plan)
        self.parked[request.request_id] = request
        # Nothing to copy (the host copy is still valid): done at once, no job in flight.
        if self.limits.is_sync_swaps or is_urgent or plan.num_blocks == 0:
            blocking.add(request.request_id)
            request.set_status(RequestStatus.SWAPPED)
            self.kv.complete_swap_out(request, plan, is_cancelled=False)
        else:
            request.set_status(RequestStatus.SWAPPING_OUT)

    def _start_swap_in(self, request: Request, swaps: list[SwapPlan], blocking: set[str],
                       *, from_waiting: bool = False) -> bool:
        if request.num_host_valid_tokens == 0:  # nothing on the host: (re)compute from scratch
            self.parked.pop(request.request_id, None)
            request.set_status(RequestStatus.WAITING)
            self.waiting.appendleft(request)
            return True
        request.num_computed_tokens = 0
        plan = self.kv.plan_swap_in(request)
        if plan is None:
            return False
        if from_waiting:
            self.waiting.popleft()
        swaps.append(plan)
        request.set_status(RequestStatus.SWAPPING_IN)
        is_small = (plan.num_blocks <= self.limits.blocking_swap_in_max_blocks
                    and len(self.running) < self.limits.blocking_swap_in_max_batch)
        if self.limits.is_sync_swaps or is_small:
            blocking.add(request.request_id)
            self.finish_swap_in(request, plan)
        else:
            self.parked[request.request_id] = request
        return True

    def finish_swap_in(self, request: Request, plan: SwapPlan) -> None:
        """The request's KV is (or will be, before the forward pass) on the GPU: it runs."""
        self.kv.complete_swap_in(request, plan)
        self.parked.pop(request.request_id, None)
        request.set_status(RequestStatus.RUNNING)
        self.running.append(request)

    def finish_swap_out(self, request: Request, plan: SwapPlan, *, is_cancelled: bool) -> None:
        self.kv.complete_swap_out(request, plan, is_cancelled=is_cancelled)
        if not is_cancelled and request.status is RequestStatus.SWAPPING_OUT:
            request.set_status(RequestStatus.SWAPPED)

    def _reserve_or_preempt(self, request: Request, num_new: int, chunks: list[ScheduledChunk],
                            swaps: list[SwapPlan], recomputed: list[str],
                            blocking: set[str]) -> bool:
        """Reserve GPU KV for a running request's next chunk, preempting the lowest-priority
        running request while memory is short. False if `request` itself was preempted or
        no request can be preempted now (then it simply skips this step).

        Such a swap-out is urgent: its blocks are reused by this very batch, so its copy must
        finish before the forward pass (the engine waits for it, even in async mode)."""
        while not self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
            # A request with a copy in flight cannot start another (its blocks are being read).
            # Nor can one whose swap-in this step planned (never in and out in one step).
            candidates = [r for r in self.running if r.num_inflight_copies == 0
                          and r.request_id not in blocking]
            if not candidates:
                return False
            victim = min(candidates, key=self._victim_order)
            self._kv_exhausted.append(victim.request_id)
            if victim is not request:
                chunks[:] = [c for c in chunks if c.request is not victim]
            self._swap_out(victim, swaps, recomputed, blocking, is_urgent=True)
            if victim is request:
                return False
        return True

    def _victim_order(self, request: Request) -> tuple[int, float]:
        # Lowest priority first; among equals, the most recent arrival (it has lost least).
        return (self.priorities.get(request.request_id, request.priority), -request.arrival_time_s)
