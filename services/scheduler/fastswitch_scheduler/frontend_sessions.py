"""The scheduler's sessions with the frontends: one per frontend, an outbox of placements,
failures and worker directories. Mutated on the scheduler's asyncio loop only."""

from __future__ import annotations

import asyncio

import grpc

from fastswitch.v1 import control_pb2

# A frontend whose session ended keeps its requests this long: it may be reconnecting (its own
# network blip); after that its clients' streams are gone and its requests are aborted.
FRONTEND_GRACE_S = 10.0


class FrontendSession:
    def __init__(self, frontend_id: str) -> None:
        self.frontend_id = frontend_id
        # None ends the session's stream (a newer session of the same frontend replaced it).
        self.outbox: asyncio.Queue[control_pb2.FrontendSessionResponse | None] = asyncio.Queue()
        self._placements = control_pb2.Placements()

    def place(self, request_id: str, worker_id: str) -> None:
        """Mutates: queued until flush(), so a tick's placements travel in one message."""
        self._placements.placements.add(request_id=request_id, worker_id=worker_id)

    def flush(self) -> None:
        if self._placements.placements:
            self.outbox.put_nowait(control_pb2.FrontendSessionResponse(placements=self._placements))
            self._placements = control_pb2.Placements()

    def end(self, request_id: str, code: grpc.StatusCode, message: str) -> None:
        self.outbox.put_nowait(control_pb2.FrontendSessionResponse(
            end=control_pb2.RequestEnd(request_id=request_id, code=code.value[0],
                                       message=message)))

    def send_directory(self, directory: control_pb2.WorkerDirectory) -> None:
        self.outbox.put_nowait(control_pb2.FrontendSessionResponse(workers=directory))

    def close(self) -> None:
        self.outbox.put_nowait(None)
