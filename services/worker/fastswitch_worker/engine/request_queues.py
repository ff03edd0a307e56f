"""Which requests wait, run or sit off the GPU: the table the batch scheduler and the switch
bookkeeping share (each holds this table, neither holds the other).

Pure bookkeeping (no torch). A request's status names its queue, and move() is the only way to
change either, so the two never disagree:

    WAITING                               -> waiting  (first come, first admitted)
    RUNNING                               -> running  (scheduling order)
    SWAPPING_OUT / SWAPPED / SWAPPING_IN  -> parked   (off the GPU or on its way)
    FINISHED / ABORTED                    -> none
"""

from __future__ import annotations

from collections import deque

from fastswitch_worker.engine.sequence import Request, RequestStatus

PARKED_STATUSES = frozenset({RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPED,
                             RequestStatus.SWAPPING_IN})


class RequestQueues:
    """The live requests of one engine, by status. Engine thread only; add() and move()
    mutate, the rest only read."""

    def __init__(self) -> None:
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.parked: dict[str, Request] = {}

    def add(self, request: Request) -> None:
        """Mutates: queues a new request (status WAITING) at the back of `waiting`."""
        assert request.status is RequestStatus.WAITING, request.status
        self.waiting.append(request)

    def move(self, request: Request, status: RequestStatus, *, to_front: bool = False) -> None:
        """Mutates: sets the request's status (the state machine asserts the transition) and
        moves it to that status's queue: the back of `waiting` or `running`, or the front of
        `waiting` with to_front=True (a request that already had its turn)."""
        old_status = request.status
        request.set_status(status)  # first: an illegal transition changes nothing
        self._take_out(request, old_status)
        if status is RequestStatus.WAITING:
            if to_front:
                self.waiting.appendleft(request)
            else:
                self.waiting.append(request)
        elif status is RequestStatus.RUNNING:
            self.running.append(request)
        elif status in PARKED_STATUSES:
            self.parked[request.request_id] = request

    def _take_out(self, request: Request, status: RequestStatus) -> None:
        if status is RequestStatus.WAITING:
            self.waiting.remove(request)
        elif status is RequestStatus.RUNNING:
            self.running.remove(request)
        elif status in PARKED_STATUSES:
            del self.parked[request.request_id]

    def __len__(self) -> int:
        return len(self.waiting) + len(self.running) + len(self.parked)

    def check_integrity(self) -> None:
        """Every queued request is in exactly the queue its status names, once."""
        for request in self.waiting:
            assert request.status is RequestStatus.WAITING, request
        for request in self.running:
            assert request.status is RequestStatus.RUNNING, request
        for request_id, request in self.parked.items():
            assert request.request_id == request_id and request.status in PARKED_STATUSES
        ids = [r.request_id for r in (*self.waiting, *self.running)] + list(self.parked)
        assert len(ids) == len(set(ids)), "a request is queued twice"
