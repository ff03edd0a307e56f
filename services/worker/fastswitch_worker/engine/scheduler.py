"""Local batching policy of one worker: who computes this step, what swaps start.

`schedule()` turns the queues into a frozen SchedulerOutput (batch + swap plans) in five named
steps; it plans allocations itself (KVManager) and has switches.Switches make every swap's
state change. Preempt/resume commands from outside are applied here, so that every transition
happens at one point in the step. The cluster's scheduler (services/scheduler) decides who
runs; this one only packs the batch and protects the worker when GPU KV runs out.

Pure Python (no torch); tests drive it with tiny pools.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastswitch_worker.engine.block_allocator import OutOfBlocksError
from fastswitch_worker.engine.kv_manager import KVManager, SwapDirection
from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.scheduler_output import SchedulerOutput, StepPlan
from fastswitch_worker.engine.sequence import Request, RequestStatus
from fastswitch_worker.engine.switches import Switches


@dataclass(frozen=True)
class SchedulerLimits:
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    is_sync_swaps: bool = False  # baseline: copies finish before the forward pass
    # Wait for a swap-in instead of overlapping it when it is this small and the batch is small.
    blocking_swap_in_max_blocks: int = 8
    blocking_swap_in_max_batch: int = 2


class BatchScheduler:
    """Packs each step's batch and plans its swaps. Every method mutates except has_work();
    engine thread only."""

    def __init__(self, kv: KVManager, queues: RequestQueues, switches: Switches,
                 limits: SchedulerLimits) -> None:
        self.kv = kv
        self.queues = queues
        self.switches = switches
        self.limits = limits
        # The cluster scheduler's latest rank of each request (UpdatePriorities): when GPU KV
        # runs out, the lowest rank is preempted first. Higher keeps the GPU.
        self.ranks: dict[str, int] = {}
        self._pending_preempts: dict[str, Request] = {}
        self._pending_resumes: dict[str, Request] = {}

    # ---- commands -------------------------------------------------------------------------
    def add(self, request: Request) -> None:
        """Queues a new request, first giving it its conversation's host KV if it extends it."""
        self.kv.claim_conversation_kv(request)
        self.queues.add(request)

    def request_preempt(self, request: Request) -> None:
        """The request leaves the GPU at the next schedule() (a pending resume is dropped)."""
        self._pending_resumes.pop(request.request_id, None)
        self._pending_preempts[request.request_id] = request

    def request_resume(self, request: Request) -> None:
        """The request comes back at the next schedule() where it fits (a pending preempt is
        dropped)."""
        self._pending_preempts.pop(request.request_id, None)
        self._pending_resumes[request.request_id] = request

    def update_ranks(self, ranks: dict[str, int]) -> None:
        """Merges the cluster scheduler's latest ranks (ids not in `ranks` keep theirs)."""
        self.ranks.update(ranks)

    def remove(self, request: Request, final_status: RequestStatus) -> None:
        """Ends a request (FINISHED or ABORTED): it leaves its queue and every table here."""
        assert final_status.is_done, final_status
        request_id = request.request_id
        self.ranks.pop(request_id, None)
        self._pending_preempts.pop(request_id, None)
        self._pending_resumes.pop(request_id, None)
        self.queues.move(request, final_status)

    def has_work(self) -> bool:
        """Read-only: something to compute or to start (parked requests alone are no work)."""
        return bool(self.queues.waiting or self.queues.running or self._pending_resumes
                    or self._pending_preempts)

    # ---- the step -------------------------------------------------------------------------
    def schedule(self) -> SchedulerOutput:
        """Decides this step: applies pending preempts and resumes, batches running requests
        (preempting the lowest-ranked when GPU KV runs out), admits waiting ones, and lets
        requests a blocking swap-in brought back join. Mutates queues, KV and statuses."""
        step = StepPlan(budget=self.limits.max_num_batched_tokens,
                        max_num_seqs=self.limits.max_num_seqs)
        self._apply_preempts(step)
        self._apply_resumes(step)
        self._batch_running(step)
        self._admit_waiting(step)
        self._batch_blocking_swap_ins(step)
        return step.build()

    def _apply_preempts(self, step: StepPlan) -> None:
        # The cluster scheduler preempts to make room for the resumes it sends in the same
        # batch (a priority change swaps two requests). When those need more GPU blocks than
        # are free, an asynchronous swap-out would hold its blocks until its copy lands and a
        # later step polls it, and the resumed request would wait a step or two more for them
        # (the baseline, copying synchronously, frees them at once). Such a swap-out is
        # urgent: copied now, its blocks go to this very step's swap-ins. Who runs does not
        # change, only when. (New requests keep waiting for the copy: they have no tokens
        # streaming yet, and the copy overlaps the batch's decoding.)
        is_urgent = bool(self._pending_preempts) and self._are_resumes_short_of_room()
        for request in list(self._pending_preempts.values()):
            if self._preempt(request, step, is_urgent=is_urgent):
                del self._pending_preempts[request.request_id]

    def _are_resumes_short_of_room(self) -> bool:
        """Read-only: the pending resumes' swap-ins need more GPU blocks than are free now
        (an estimate: other requests' unused reservations may still come back)."""
        num_needed_blocks = sum(
            self.kv.num_blocks_for(request.num_host_valid_tokens)
            for request in self._pending_resumes.values()
            if request.status is RequestStatus.SWAPPED)
        return num_needed_blocks > self.kv.gpu.num_free_blocks

    def _apply_resumes(self, step: StepPlan) -> None:
        for request in list(self._pending_resumes.values()):
            if request.status is RequestStatus.SWAPPING_OUT:
                step.cancelled_swap_out_ids.add(request.request_id)
                self.switches.cancel_swap_out(request)
            elif request.status is RequestStatus.SWAPPED:
                if not self._start_swap_in(request, step):
                    continue  # no GPU room yet; retried next step
            del self._pending_resumes[request.request_id]

    def _batch_running(self, step: StepPlan) -> None:
        for request in list(self.queues.running):
            if not step.has_room():
                break
            if request not in self.queues.running:
                continue  # preempted below to make room
            num_new = min(request.num_uncomputed_tokens, step.budget)
            if self._reserve_or_preempt(request, num_new, step):
                step.add_chunk(request, num_new)

    def _admit_waiting(self, step: StepPlan) -> None:
        while self.queues.waiting and step.has_room():
            request = self.queues.waiting[0]
            if request.num_host_valid_tokens > 0:  # a new turn reusing host KV: swap it in
                if not self._start_swap_in(request, step):
                    break
                continue
            num_new = min(request.num_uncomputed_tokens, step.budget)
            if not self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
                break  # admission never preempts: the cluster scheduler decides who runs
            self.queues.move(request, RequestStatus.RUNNING)
            step.add_chunk(request, num_new)

    def _batch_blocking_swap_ins(self, step: StepPlan) -> None:
        """Requests that a blocking swap-in made runnable join this very batch."""
        scheduled = step.scheduled_ids()
        for plan in list(step.swaps):
            if (plan.direction is SwapDirection.IN and plan.request_id in step.blocking_ids
                    and plan.request_id not in scheduled and step.has_room()):
                request = next(r for r in self.queues.running if r.request_id == plan.request_id)
                num_new = min(request.num_uncomputed_tokens, step.budget)
                if self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
                    step.add_chunk(request, num_new)

    # ---- transitions ----------------------------------------------------------------------
    def _preempt(self, request: Request, step: StepPlan, *, is_urgent: bool) -> bool:
        """Start moving a request off the GPU (urgent: its copy before this step's forward
        pass, its blocks free at once); False when it must wait (a copy in flight)."""
        status = request.status
        if status is RequestStatus.SWAPPING_IN or request.num_inflight_copies:
            return False  # retried next step, once its copy is done
        if status is RequestStatus.WAITING:
            self.queues.move(request, RequestStatus.SWAPPED)  # holds no GPU KV: no copy
        elif status is RequestStatus.RUNNING:
            self._swap_out(request, step, is_urgent=is_urgent)
        return True

    def _swap_out(self, request: Request, step: StepPlan, *, is_urgent: bool) -> None:
        """Plan a running request's swap-out. When urgent or in sync mode the plan is
        blocking: its GPU blocks are free at once, the engine copies before the forward pass."""
        request.num_preemptions += 1
        if request.num_computed_tokens == 0:
            self.switches.park_without_copy(request)
            return
        try:
            plan = self.kv.plan_swap_out(request)
        except OutOfBlocksError:  # host memory full even after eviction: recompute later
            self.switches.drop_for_recompute(request)
            step.recomputed_ids.append(request.request_id)
            return
        # Nothing to copy (the host copy is still valid): done at once, no job in flight.
        is_blocking = self.limits.is_sync_swaps or is_urgent or plan.num_blocks == 0
        step.add_swap(plan, is_blocking=is_blocking)
        self.switches.begin_swap_out(request, plan, is_blocking=is_blocking)

    def _start_swap_in(self, request: Request, step: StepPlan) -> bool:
        """Plan a parked request's (or a new turn's) swap-in; False when the GPU has no room
        yet. With nothing on the host the request goes back to the front of the line."""
        if request.num_host_valid_tokens == 0:  # nothing on the host: (re)compute from scratch
            self.queues.move(request, RequestStatus.WAITING, to_front=True)
            return True
        request.num_computed_tokens = 0  # no GPU KV until the copy lands
        plan = self.kv.plan_swap_in(request)
        if plan is None:
            return False
        is_small = (plan.num_blocks <= self.limits.blocking_swap_in_max_blocks
                    and len(self.queues.running) < self.limits.blocking_swap_in_max_batch)
        is_blocking = self.limits.is_sync_swaps or is_small
        step.add_swap(plan, is_blocking=is_blocking)
        self.switches.begin_swap_in(request, plan, is_blocking=is_blocking)
        return True

    def _reserve_or_preempt(self, request: Request, num_new: int, step: StepPlan) -> bool:
        """Reserve GPU KV for a running request's next chunk, preempting the lowest-ranked
        running request while memory is short. False if `request` itself was preempted or
        no request can be preempted now (then it simply skips this step).

        Such a swap-out is urgent: its blocks are reused by this very batch, so its copy must
        finish before the forward pass (the engine waits for it, even in async mode)."""
        while not self.kv.reserve_gpu(request, request.num_computed_tokens + num_new):
            # A request with a copy in flight cannot start another (its blocks are being read).
            # Nor can one whose swap-in this step planned (never in and out in one step).
            candidates = [r for r in self.queues.running if r.num_inflight_copies == 0
                          and r.request_id not in step.blocking_ids]
            if not candidates:
                return False
            victim = min(candidates, key=self._victim_order)
            step.kv_exhausted_ids.append(victim.request_id)
            if victim is not request:
                step.drop_chunk(victim)
            self._swap_out(victim, step, is_urgent=True)
            if victim is request:
                return False
        return True

    def _victim_order(self, request: Request) -> tuple[int, float]:
        # Lowest rank first; among equals, the most recent arrival (it has lost least). Until
        # the cluster scheduler ranks a request, its client priority stands in for the rank
        # (both: higher keeps the GPU); this is the one place the two meet.
        rank = self.ranks.get(request.request_id, request.client_priority)
        return (rank, -request.arrival_time_s)
