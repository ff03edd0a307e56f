"""Where one request's time went, from the state changes its frontend sees (pure).

A request is always in exactly one phase; each change closes the current phase at the time it
is seen and opens the next, so the phases' durations sum to the time since arrival. The
frontend sees the worker's changes once per engine step, and only the last state of a step
(a request admitted and batched in one step shows as RUNNING at once), so a phase shorter
than a step may be folded into the next one.
"""

from __future__ import annotations

import enum

from fastswitch.v1 import common_pb2


class Phase(enum.Enum):
    """A phase of a request's life, as the frontend can tell them apart."""

    PLACEMENT_WAIT = "placement_wait"  # arrived; not placed yet (next tick, or no slot)
    ADMISSION_WAIT = "admission_wait"  # staged on a worker; its engine does not hold it yet
    ENGINE_QUEUE = "engine_queue"  # in the engine's queue (WAITING)
    RUNNING = "running"
    SWAPPING_OUT = "swapping_out"
    SWAPPED_OUT = "swapped_out"
    SWAPPING_IN = "swapping_in"
    DONE = "done"  # finished or aborted: no further time is counted


# The worker's states (fastswitch.v1.RequestState) and the phase each one opens.
_PHASE_OF_STATE = {
    common_pb2.REQUEST_STATE_WAITING: Phase.ENGINE_QUEUE,
    common_pb2.REQUEST_STATE_RUNNING: Phase.RUNNING,
    common_pb2.REQUEST_STATE_SWAPPING_OUT: Phase.SWAPPING_OUT,
    common_pb2.REQUEST_STATE_SWAPPED: Phase.SWAPPED_OUT,
    common_pb2.REQUEST_STATE_SWAPPING_IN: Phase.SWAPPING_IN,
    common_pb2.REQUEST_STATE_FINISHED: Phase.DONE,
    common_pb2.REQUEST_STATE_ABORTED: Phase.DONE,
}
TIMED_PHASES = tuple(p for p in Phase if p is not Phase.DONE)


class Timeline:
    """Accumulated milliseconds per phase. Not thread-safe: the frontend's event loop owns it.
    Times are `time.monotonic()` seconds, passed in so tests can drive it."""

    def __init__(self, arrival_s: float) -> None:
        self.phase = Phase.PLACEMENT_WAIT
        self.since_s = arrival_s
        self.durations_ms: dict[Phase, float] = dict.fromkeys(TIMED_PHASES, 0.0)

    def placed(self, now_s: float) -> None:
        """Mutates: the scheduler placed the request on a worker. Only the first placement
        ends the wait for one; a later one (a move) finds the request in another phase."""
        if self.phase is Phase.PLACEMENT_WAIT:
            self._enter(Phase.ADMISSION_WAIT, now_s)

    def state(self, state: int, now_s: float) -> None:
        """Mutates: the worker reported `state` (a fastswitch.v1.RequestState). An unknown
        state, or a change after the request is done, is ignored."""
        phase = _PHASE_OF_STATE.get(state)
        if phase is None or self.phase is Phase.DONE or phase is self.phase:
            return
        self._enter(phase, now_s)

    def totals_ms(self, now_s: float) -> dict[Phase, float]:
        """The durations so far, the open phase counted until `now_s` (pure)."""
        totals = dict(self.durations_ms)
        if self.phase is not Phase.DONE:
            totals[self.phase] += max(0.0, now_s - self.since_s) * 1e3
        return totals

    def _enter(self, phase: Phase, now_s: float) -> None:
        if self.phase is not Phase.DONE:
            self.durations_ms[self.phase] += max(0.0, now_s - self.since_s) * 1e3
        self.phase = phase
        self.since_s = now_s
