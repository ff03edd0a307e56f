"""fastswitch.v1.Worker servicer: adapts the protos to WorkerService."""

from __future__ import annotations

import asyncio
import logging

import grpc

from fastswitch.v1 import worker_pb2, worker_pb2_grpc
from fastswitch_worker.service.session import Session, SessionRefusedError, parse_epoch
from fastswitch_worker.service.worker_service import WorkerService

log = logging.getLogger("fastswitch.worker")
# An idle session still says something this often, so the scheduler can tell a quiet worker
# from a hung one (a stopped process keeps its socket open; TCP alone does not notice).
HEARTBEAT_S = 1.0
MAX_FRONTEND_ID_CHARS = 256


class WorkerServicer(worker_pb2_grpc.WorkerServicer):
    def __init__(self, service: WorkerService) -> None:
        self.service = service

    async def Session(self, request_iterator, context: grpc.aio.ServicerContext):
        if not self.service.engine_loop.ready.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "model is not loaded yet")
        if not self.service.is_serving:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the worker's engine failed")
        try:
            session = self.service.open_session(parse_epoch(context.invocation_metadata()),
                                                context.peer())
        except SessionRefusedError as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        reader = asyncio.create_task(self._read_commands(request_iterator, session))
        reader.add_done_callback(_retrieve)  # a broken request stream ends the session quietly
        closed = asyncio.create_task(session.closed.wait())
        try:
            yield worker_pb2.SessionResponse(hello=self.service.hello())
            while True:
                getter = asyncio.ensure_future(session.events.get())
                done, _ = await asyncio.wait({getter, reader, closed}, timeout=HEARTBEAT_S,
                                             return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    yield getter.result()
                    continue
                if not done:  # idle: a heartbeat (an empty step event)
                    getter.cancel()
                    yield worker_pb2.SessionResponse(step=worker_pb2.StepEvent(
                        is_draining=self.service.is_draining))
                    continue
                # The scheduler hung up, or the session was closed (hand-over, drain, engine
                # failure): send what is queued, then end with the session's status.
                getter.cancel()
                while not session.events.empty():
                    yield session.events.get_nowait()
                break
            if session.end_code is not None:
                await context.abort(session.end_code, session.end_message)
        finally:
            reader.cancel()
            closed.cancel()
            self.service.close_session(session)

    async def _read_commands(self, request_iterator, session: Session) -> None:
        async for msg in request_iterator:
            if session.closed.is_set():
                return
            try:
                self.service.handle(session, msg)
            except Exception:  # a malformed command must not end the session
                log.exception("bad worker command")

    async def Stream(self, request_iterator, context: grpc.aio.ServicerContext):
        """A frontend's stream: its hello first, then stages and cancels; this worker's steps
        for its requests back, each message one step's tokens."""
        if not self.service.is_serving:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the worker is not serving")
        first = await anext(request_iterator.__aiter__(), None)
        frontend_id = first.hello.frontend_id if first is not None and first.HasField("hello") else ""
        if not 0 < len(frontend_id) <= MAX_FRONTEND_ID_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"a stream starts with a hello naming the frontend (1-"
                                f"{MAX_FRONTEND_ID_CHARS} characters)")
        queue = self.service.open_stream(frontend_id)
        reader = asyncio.create_task(self._read_stream(request_iterator, frontend_id, queue))
        reader.add_done_callback(_retrieve)
        try:
            # One message per step, straight from the outbox: the reader puts None when the
            # frontend hangs up, as the outbox does when a newer stream replaces this one.
            while (response := await queue.get()) is not None:
                yield response
        finally:
            reader.cancel()
            self.service.close_stream(frontend_id, queue)

    async def _read_stream(self, request_iterator, frontend_id: str, queue: asyncio.Queue) -> None:
        try:
            async for msg in request_iterator:
                try:
                    self.service.handle_stream(frontend_id, msg)
                except Exception:  # a malformed message must not end the stream
                    log.exception("bad stream message")
        finally:
            queue.put_nowait(None)  # the frontend hung up: the stream ends

    async def GetWorkerStats(self, request, context) -> worker_pb2.GetWorkerStatsResponse:
        return self.service.latest_stats


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
