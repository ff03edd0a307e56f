"""fastswitch.v1.Worker servicer: adapts the protos to WorkerService."""

from __future__ import annotations

import asyncio
import logging

import grpc

from fastswitch.v1 import worker_pb2, worker_pb2_grpc
from fastswitch_worker.service.worker_service import WorkerService

log = logging.getLogger("fastswitch.worker")


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, service: WorkerService) -> None:
        self.service = service

    async def Session(self, request_iterator, context: grpc.aio.ServicerContext):
        if not self.service.engine_loop.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is not loaded yet")
        session = self.service.open_session()
        yield worker_pb2.SessionResponse(hello=self.service.hello())
        reader = asyncio.create_task(self._read_commands(request_iterator, session))
        try:
            while self.service.session is session:
                getter = asyncio.ensure_future(session.events.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    while not session.events.empty():
                        yield session.events.get_nowait()
                    break
                yield getter.result()
        finally:
            reader.cancel()
            self.service.close_session(session)

    async def _read_commands(self, request_iterator, session) -> None:
        async for msg in request_iterator:
            try:
                self.service.handle(session, msg)
            except Exception:  # a malformed command must not end the session
                log.exception("bad worker command")

    async def GetWorkerStats(self, request, context) -> worker_pb2.GetWorkerStatsResponse:
        return self.service.latest_stats
