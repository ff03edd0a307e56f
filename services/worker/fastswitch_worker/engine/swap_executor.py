"""Executes a step's swap plans and applies finished copies to the requests' state.

The scheduler plans (and, for blocking plans, already made the transition); this module runs
the copies through the Swapper: blocking plans now, on the engine thread, in planning order;
the others on the copy threads, polled without blocking. Engine thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from fastswitch_worker.engine.block_allocator import OutOfBlocksError
from fastswitch_worker.engine.kv_manager import KVManager, PublishedKV, SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import SwapCounters
from fastswitch_worker.engine.scheduler import Scheduler, SchedulerOutput
from fastswitch_worker.engine.sequence import Request
from fastswitch_worker.engine.swapper import CopyJob, Swapper


@dataclass(eq=False)
class InflightCopy:
    job: CopyJob
    request: Request
    is_retire: bool  # a finished turn's KV on its way to the conversation cache


class SwapExecutor:
    def __init__(self, swapper: Swapper, scheduler: Scheduler, kv: KVManager,
                 counters: SwapCounters, *, block_bytes: int,
                 on_done_and_idle: Callable[[Request], None]) -> None:
        self.swapper = swapper
        self.scheduler = scheduler
        self.kv = kv
        self.counters = counters
        self.block_bytes = block_bytes
        self._on_done_and_idle = on_done_and_idle  # frees a finished request's KV
        self.inflight: list[InflightCopy] = []
        self.published: list[PublishedKV] = []  # drained by the engine each step

    def start(self, output: SchedulerOutput, requests: dict[str, Request]) -> None:
        """Mutates: cancels swap-outs a resume overtook, runs blocking plans, submits others."""
        for inflight in self.inflight:
            if inflight.request.request_id in output.cancelled_swap_out_ids:
                inflight.job.is_cancelled = True
                self.counters.num_cancelled_swap_outs += 1
        for plan in output.swaps:  # in planning order (see SchedulerOutput.swaps)
            request = requests[plan.request_id]
            self._count(plan, is_retire=False)
            if plan.request_id in output.blocking_ids:
                # The scheduler already made the transition: copy now, before any later plan
                # of this step can write the blocks this one reads.
                start = time.perf_counter()
                job = self.swapper.run_now(plan)
                self.counters.stall_ms += (time.perf_counter() - start) * 1e3
                job.wait()  # raises a failed copy's error
            else:
                self._submit(plan, request, is_retire=False)

    def start_retire(self, request: Request) -> bool:
        """Mutates: copy a finished turn's new KV to host memory for the next turn; False
        when host memory cannot hold it (the caller frees the request instead)."""
        try:
            plan = self.kv.plan_swap_out(request)
        except OutOfBlocksError:
            return False
        self._count(plan, is_retire=True)
        self._submit(plan, request, is_retire=True)
        return True

    def _submit(self, plan: SwapPlan, request: Request, *, is_retire: bool) -> None:
        request.num_inflight_copies += 1
        self.inflight.append(InflightCopy(self.swapper.submit(plan), request, is_retire))

    def _count(self, plan: SwapPlan, *, is_retire: bool) -> None:
        if plan.direction is SwapDirection.IN:
            self.counters.num_swap_ins += 1
            return
        if is_retire:
            self.counters.num_retired_turns += 1
        else:
            self.counters.num_swap_outs += 1
        num_needed_blocks = self.kv.num_blocks_for(plan.num_tokens)
        self.counters.reused_bytes += (num_needed_blocks - plan.num_blocks) * self.block_bytes

    def poll(self, *, wait: bool) -> None:
        """Mutates: applies every finished copy (waits for all of them when wait=True; that
        waiting counts as stall)."""
        still_running = []
        for inflight in self.inflight:
            if wait and not inflight.job.is_done():
                start = time.perf_counter()
                inflight.job.wait_for(None)
                self.counters.stall_ms += (time.perf_counter() - start) * 1e3
            if inflight.job.is_done():
                self._complete(inflight)
            else:
                still_running.append(inflight)
        self.inflight = still_running

    def wait_for_any(self, timeout_s: float) -> None:
        """Block up to timeout_s for the oldest copy (nothing else to do meanwhile)."""
        if self.inflight:
            self.inflight[0].job.wait_for(timeout_s)

    def _complete(self, inflight: InflightCopy) -> None:
        job, request, plan = inflight.job, inflight.request, inflight.job.plan
        job.wait()  # raises the copy's error, if any
        request.num_inflight_copies -= 1
        if inflight.is_retire:
            self.kv.complete_swap_out(request, plan, is_cancelled=False)
            self.published.append(self.kv.retire(request))
        elif request.status.is_done:
            pass  # aborted while the copy ran: freed below
        elif plan.direction is SwapDirection.OUT:
            self.scheduler.finish_swap_out(request, plan, is_cancelled=job.is_cancelled)
        else:
            self.scheduler.finish_swap_in(request, plan)
        if request.status.is_done and request.num_inflight_copies == 0:
            self._on_done_and_idle(request)
