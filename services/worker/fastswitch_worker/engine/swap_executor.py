"""Runs copy jobs through the Swapper and reports which finished. It applies nothing.

Blocking plans run now, on the engine thread, in the order they are given; the others go to
the Swapper's copy threads (one per direction, jobs in order, an event per job) and are polled
without blocking. What a finished copy means for its request is switches.Switches' business:
poll() returns FinishedCopy values and the engine hands them there. Engine thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastswitch_worker.engine.kv_manager import SwapPlan
from fastswitch_worker.engine.outputs import SwapCounters
from fastswitch_worker.engine.swapper import CopyJob, Swapper
from fastswitch_worker.engine.switches import CopyKind, FinishedCopy


@dataclass(eq=False)
class _InflightCopy:
    job: CopyJob
    kind: CopyKind
    is_cancelled: bool = False  # a resume overtook this swap-out


class SwapExecutor:
    """Implements switches.CopyRunner. Time the engine thread spends waiting on a copy is
    added to counters.stall_ms (the only figure it keeps)."""

    def __init__(self, swapper: Swapper, counters: SwapCounters) -> None:
        self.swapper = swapper
        self.counters = counters
        self._inflight: list[_InflightCopy] = []  # submission order

    @property
    def num_inflight(self) -> int:
        """Read-only: copies submitted and not yet returned by poll()."""
        return len(self._inflight)

    def run_now(self, plan: SwapPlan) -> None:
        """Copies now on the engine thread (a stall); raises a failed copy's error."""
        start = time.perf_counter()
        job = self.swapper.run_now(plan)
        self.counters.stall_ms += (time.perf_counter() - start) * 1e3
        job.wait()

    def submit(self, plan: SwapPlan, kind: CopyKind) -> None:
        """Mutates: queues the copy on its direction's thread; poll() reports it when done."""
        self._inflight.append(_InflightCopy(self.swapper.submit(plan), kind))

    def cancel_swap_out(self, request_id: str) -> None:
        """Mutates: marks the request's in-flight swap-out as overtaken by a resume. The copy
        still runs (its job is queued or running); its FinishedCopy says is_cancelled."""
        for inflight in self._inflight:
            if inflight.kind is CopyKind.SWAP_OUT and inflight.job.plan.request_id == request_id:
                inflight.is_cancelled = True

    def poll(self, *, wait: bool) -> list[FinishedCopy]:
        """Mutates: returns the copies that finished since the last call, in submission order,
        and forgets them. Never blocks unless wait=True: then it waits for every copy in
        flight (that waiting counts as stall)."""
        finished: list[FinishedCopy] = []
        still_running: list[_InflightCopy] = []
        for inflight in self._inflight:
            job = inflight.job
            if wait and not job.is_done():
                start = time.perf_counter()
                job.wait_for(None)
                self.counters.stall_ms += (time.perf_counter() - start) * 1e3
            if job.is_done():
                finished.append(FinishedCopy(job.plan, inflight.kind, inflight.is_cancelled,
                                             job.error))
            else:
                still_running.append(inflight)
        self._inflight = still_running
        return finished

    def wait_for_any(self, timeout_s: float) -> None:
        """Blocks up to timeout_s for the oldest copy (nothing else to do meanwhile)."""
        if self._inflight:
            self._inflight[0].job.wait_for(timeout_s)
