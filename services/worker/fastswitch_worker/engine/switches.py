"""Every state change of a context switch, in one place.

A switch moves a request's KV between GPU and host memory. Its life, and who drives it:

1. BatchScheduler.schedule() decides who switches and plans the copy (KVManager), then calls
   begin_swap_out() / begin_swap_in() / cancel_swap_out() here. A copy the engine must finish
   before the forward pass (blocking: the baseline, an urgent swap-out, a small swap-in) is
   completed here at once: the engine copies it before anything reads the blocks.
2. The engine hands the step's SchedulerOutput to launch(), which starts the copies on the
   copy executor (swap_executor.SwapExecutor) and counts them.
3. The copy executor only reports what finished (FinishedCopy, plain values); the engine hands
   that list to apply_finished(), which applies what follows: the request's status and queue,
   its GPU blocks freed or kept, the host copy's reuse bookkeeping, a finished request's KV.

Pure bookkeeping (no torch): the copy executor is reached through the CopyRunner protocol.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from fastswitch_worker.engine.block_allocator import OutOfBlocksError
from fastswitch_worker.engine.kv_manager import KVManager, PublishedKV, SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import SwapCounters
from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.scheduler_output import SchedulerOutput
from fastswitch_worker.engine.sequence import Request, RequestStatus


class CopyKind(enum.Enum):
    SWAP_OUT = "swap_out"  # a preempted request's KV to host memory
    SWAP_IN = "swap_in"  # back to the GPU
    RETIRE = "retire"  # a finished turn's KV to the conversation cache, for its next turn


@dataclass(frozen=True)
class FinishedCopy:
    """One copy the executor saw finish, in the order they finished."""

    plan: SwapPlan
    kind: CopyKind
    is_cancelled: bool = False  # a swap-out a resume overtook: the GPU blocks stay valid
    error: BaseException | None = None  # the copy failed (its data is not valid)


class CopyRunner(Protocol):
    """What launch() needs from the copy executor (SwapExecutor; FakeCopies in pure tests)."""

    def run_now(self, plan: SwapPlan) -> None: ...

    def submit(self, plan: SwapPlan, kind: CopyKind) -> None: ...

    def cancel_swap_out(self, request_id: str) -> None: ...


class CopyFailedError(RuntimeError):
    """A copy between GPU and host memory failed; its request's KV is not valid."""


class Switches:
    """Owns every state change a swap makes. All methods mutate; engine thread only."""

    def __init__(self, kv: KVManager, queues: RequestQueues, counters: SwapCounters, *,
                 block_bytes: int) -> None:
        self.kv = kv
        self.queues = queues
        self.counters = counters
        self.block_bytes = block_bytes

    # ---- 1. planned by the batch scheduler ---------------------------------------------------
    def park_without_copy(self, request: Request) -> None:
        """A preempted running request with no computed KV: nothing to copy, it parks."""
        self.kv.free_gpu(request)
        self.queues.move(request, RequestStatus.SWAPPED)

    def drop_for_recompute(self, request: Request) -> None:
        """Host memory cannot take the request's KV: drop it; it recomputes on resume."""
        self.kv.release(request)
        request.num_computed_tokens = 0
        self.queues.move(request, RequestStatus.SWAPPED)

    def begin_swap_out(self, request: Request, plan: SwapPlan, *, is_blocking: bool) -> None:
        """A running request leaves the GPU. Blocking: its GPU blocks are free at once (the
        engine copies them out before this step's forward pass reuses them); otherwise it
        holds them, SWAPPING_OUT, until its copy finishes."""
        if is_blocking:
            self._complete_swap_out(request, plan)
        else:
            self.queues.move(request, RequestStatus.SWAPPING_OUT)

    def cancel_swap_out(self, request: Request) -> None:
        """A resume overtook the request's swap-out: its GPU KV is still valid, so it runs on
        now; its copy finishes in the background and frees nothing (see apply_finished)."""
        self.queues.move(request, RequestStatus.RUNNING)

    def begin_swap_in(self, request: Request, plan: SwapPlan, *, is_blocking: bool) -> None:
        """A parked request (or a new turn with host KV) comes back to the GPU. Blocking: it
        runs at once (the engine copies before the forward pass); otherwise it stays parked,
        SWAPPING_IN, until its copy finishes."""
        self.queues.move(request, RequestStatus.SWAPPING_IN)
        if is_blocking:
            self._complete_swap_in(request, plan)

    # ---- 2. started by the engine ------------------------------------------------------------
    def launch(self, output: SchedulerOutput, copies: CopyRunner) -> None:
        """Starts the step's copies: marks the swap-outs a resume overtook, copies blocking
        plans now in planning order (a plan may reuse blocks an earlier one read), submits
        the others. Raises a failed blocking copy's error."""
        for request_id in output.cancelled_swap_out_ids:
            copies.cancel_swap_out(request_id)
            self.counters.num_cancelled_swap_outs += 1
        for plan in output.swaps:
            kind = CopyKind.SWAP_IN if plan.direction is SwapDirection.IN else CopyKind.SWAP_OUT
            self._count(plan, kind)
            if plan.request_id in output.blocking_ids:
                copies.run_now(plan)  # its transition was made when it was planned
            else:  # SWAPPING_OUT or SWAPPING_IN: parked until the copy finishes
                self._submit(plan, kind, self.queues.parked[plan.request_id], copies)

    def retire_or_release(self, request: Request, copies: CopyRunner) -> None:
        """A request just finished. A conversation's turn keeps its KV for the next turn: its
        new KV is copied to host memory and published once there. Any other request, or one
        host memory cannot hold, frees its KV (once no copy of it runs)."""
        if self.kv.layout.is_reuse and request.conversation_id and request.num_computed_tokens:
            try:
                plan = self.kv.plan_swap_out(request)
            except OutOfBlocksError:
                plan = None
            if plan is not None:
                self._count(plan, CopyKind.RETIRE)
                self._submit(plan, CopyKind.RETIRE, request, copies)
                return
        self.release_if_done(request)

    def _submit(self, plan: SwapPlan, kind: CopyKind, request: Request,
                copies: CopyRunner) -> None:
        copies.submit(plan, kind)
        # Read by the scheduler (no new switch while one runs) and the KV manager (no host
        # copy dropped while a thread writes it); the matching decrement is apply_finished's.
        request.num_inflight_copies += 1

    # ---- 3. finished copies ------------------------------------------------------------------
    def apply_finished(self, finished: Iterable[FinishedCopy],
                       requests: Mapping[str, Request]) -> list[PublishedKV]:
        """Applies what follows each finished copy, in order; returns the conversations whose
        KV became reusable. A failed copy changes nothing but its count of copies in flight
        (so an abort can free its KV); its error is raised once the others are applied."""
        published: list[PublishedKV] = []
        errors: list[FinishedCopy] = []
        for copy in finished:
            request = requests[copy.plan.request_id]
            request.num_inflight_copies -= 1
            if copy.error is not None:
                errors.append(copy)
            elif copy.kind is CopyKind.RETIRE:
                self.kv.complete_swap_out(request, copy.plan, is_cancelled=False)
                published.append(self.kv.retire(request))
            elif request.status.is_done:
                pass  # aborted while the copy ran: its KV is freed below
            elif copy.is_cancelled:  # the request runs on with its GPU KV
                self.kv.complete_swap_out(request, copy.plan, is_cancelled=True)
            elif copy.kind is CopyKind.SWAP_OUT:
                self._complete_swap_out(request, copy.plan)
            else:
                self._complete_swap_in(request, copy.plan)
            self.release_if_done(request)
        if errors:
            plan = errors[0].plan
            raise CopyFailedError(f"swap {plan.direction.value} of {plan.request_id} failed") \
                from errors[0].error
        return published

    def release_if_done(self, request: Request) -> None:
        """A finished or aborted request frees its KV on both sides, once no copy of it runs
        (a copy still reading or writing its blocks frees them when it finishes)."""
        if request.status.is_done and request.num_inflight_copies == 0:
            self.kv.release(request)

    # ---- transitions shared by blocking and finished copies ----------------------------------
    def _complete_swap_out(self, request: Request, plan: SwapPlan) -> None:
        self.kv.complete_swap_out(request, plan, is_cancelled=False)  # frees the GPU blocks
        self.queues.move(request, RequestStatus.SWAPPED)

    def _complete_swap_in(self, request: Request, plan: SwapPlan) -> None:
        self.kv.complete_swap_in(request, plan)
        self.queues.move(request, RequestStatus.RUNNING)

    def _count(self, plan: SwapPlan, kind: CopyKind) -> None:
        if kind is CopyKind.SWAP_IN:
            self.counters.num_swap_ins += 1
            return
        if kind is CopyKind.RETIRE:
            self.counters.num_retired_turns += 1
        else:
            self.counters.num_swap_outs += 1
        num_needed_blocks = self.kv.num_blocks_for(plan.num_tokens)
        self.counters.reused_bytes += (num_needed_blocks - plan.num_blocks) * self.block_bytes
