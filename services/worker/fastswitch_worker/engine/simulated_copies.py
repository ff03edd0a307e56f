"""Copies between GPU and host memory that only take time: the simulated engine's stand-in for
the SwapExecutor and the Swapper (no tensors, no threads, no torch).

A copy of B bytes takes B / bytes_per_s seconds. As with the real copy threads, each direction
runs one copy at a time in submission order, the two directions overlap, and asynchronous
copies overlap the engine's steps; a copy is done once the clock has passed its end, so poll()
never blocks and a simulated worker spends no CPU on copies. Blocking copies (run_now, and
every copy in synchronous mode, the baseline's) sleep on the engine thread, as the real ones
occupy it. Engine thread only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import CopyTotals, SwapCounters
from fastswitch_worker.engine.switches import CopyKind, FinishedCopy


class Clock(Protocol):
    """Where simulated time comes from; tests pass one whose sleep() only moves now()."""

    def now(self) -> float:
        """Seconds, monotonic."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall time: time.monotonic(), and time.sleep() (the thread sleeps, no CPU is spent)."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass(eq=False)
class _InflightCopy:
    plan: SwapPlan
    kind: CopyKind
    end_s: float  # clock time at which the copy has landed
    duration_s: float
    is_cancelled: bool = False  # a resume overtook this swap-out


class SimulatedCopies:
    """Implements switches.CopyRunner and what the engine polls (SwapExecutor's interface), and
    the Swapper's `totals`. Stall time (the engine thread waiting on a copy) is added to
    counters.stall_ms, as the SwapExecutor does."""

    def __init__(self, counters: SwapCounters, clock: Clock, *, block_bytes: int,
                 bytes_per_s: float, is_async: bool) -> None:
        self.counters = counters
        self.clock = clock
        self.block_bytes = block_bytes
        self.bytes_per_s = bytes_per_s
        self.is_async = is_async
        self.totals = {SwapDirection.OUT: CopyTotals(), SwapDirection.IN: CopyTotals()}
        self._inflight: list[_InflightCopy] = []  # submission order
        # When each direction's copy "thread" is free again (clock time).
        self._busy_until_s = {SwapDirection.OUT: 0.0, SwapDirection.IN: 0.0}

    def duration_s(self, plan: SwapPlan) -> float:
        """Read-only: how long `plan` takes to copy."""
        return plan.num_blocks * self.block_bytes / self.bytes_per_s

    @property
    def num_inflight(self) -> int:
        """Read-only: copies submitted and not yet returned by poll()."""
        return len(self._inflight)

    def run_now(self, plan: SwapPlan) -> None:
        """Mutates: copies now on the engine thread (it sleeps for the copy: a stall)."""
        duration_s = self.duration_s(plan)
        self._sleep_stalled(duration_s)
        self._count(plan, duration_s)

    def submit(self, plan: SwapPlan, kind: CopyKind) -> None:
        """Mutates: queues the copy behind its direction's earlier ones; poll() reports it once
        its time has passed. In synchronous mode it is copied now (sleeping, no stall counted:
        the SwapExecutor does not count one either) and reported by the next poll()."""
        duration_s = self.duration_s(plan)
        if not self.is_async:
            self.clock.sleep(duration_s)
            self._inflight.append(_InflightCopy(plan, kind, self.clock.now(), duration_s))
            return
        start_s = max(self.clock.now(), self._busy_until_s[plan.direction])
        end_s = start_s + duration_s
        self._busy_until_s[plan.direction] = end_s
        self._inflight.append(_InflightCopy(plan, kind, end_s, duration_s))

    def cancel_swap_out(self, request_id: str) -> None:
        """Mutates: marks the request's in-flight swap-out as overtaken by a resume. The copy
        still takes its time; its FinishedCopy says is_cancelled."""
        for inflight in self._inflight:
            if inflight.kind is CopyKind.SWAP_OUT and inflight.plan.request_id == request_id:
                inflight.is_cancelled = True

    def poll(self, *, wait: bool) -> list[FinishedCopy]:
        """Mutates: returns the copies that landed since the last call, in submission order,
        and forgets them. Never sleeps unless wait=True: then it sleeps until every copy in
        flight has landed (that waiting counts as stall)."""
        if wait and self._inflight:
            self._sleep_stalled(max(c.end_s for c in self._inflight) - self.clock.now())
        now_s = self.clock.now()
        finished: list[FinishedCopy] = []
        still_running: list[_InflightCopy] = []
        for inflight in self._inflight:
            if inflight.end_s <= now_s:
                self._count(inflight.plan, inflight.duration_s)
                finished.append(FinishedCopy(inflight.plan, inflight.kind, inflight.is_cancelled))
            else:
                still_running.append(inflight)
        self._inflight = still_running
        return finished

    def wait_for_any(self, timeout_s: float) -> None:
        """Sleeps up to timeout_s for the oldest copy (nothing else to do meanwhile)."""
        if self._inflight:
            self.clock.sleep(min(timeout_s, self._inflight[0].end_s - self.clock.now()))

    def _sleep_stalled(self, seconds: float) -> None:
        if seconds > 0:
            start_s = self.clock.now()
            self.clock.sleep(seconds)
            self.counters.stall_ms += (self.clock.now() - start_s) * 1e3

    def _count(self, plan: SwapPlan, duration_s: float) -> None:
        self.totals[plan.direction].count(len(plan.extents), plan.num_blocks * self.block_bytes,
                                          duration_s)
