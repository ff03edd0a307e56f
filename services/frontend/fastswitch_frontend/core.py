"""FrontendCore: this frontend's requests, its session with the scheduler and its streams from
the workers.

A request's life: either API (the gRPC servicer, the HTTP API) validates and tokenizes it
(generation.py); the core submits its counts to the scheduler; the scheduler places it on a
worker; the core stages its data there (over that worker's stream); the worker runs it once the
scheduler admits it and streams its tokens here, where they are detokenized for the client.
The scheduler ends a request only to fail it (RequestEnd); a worker's last output ends it
normally.

Runs on one asyncio loop; nothing here is thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import grpc

from fastswitch.tenants import TenantRegistry
from fastswitch.tokenizer import Tokenizer, load_tokenizer
from fastswitch.v1 import control_pb2, control_pb2_grpc, worker_pb2, worker_pb2_grpc
from fastswitch_frontend.config import FrontendConfig
from fastswitch_frontend.links import Link
from fastswitch_frontend.metrics import FrontendMetrics
from fastswitch_frontend.requests import Failure, FrontendRequest

log = logging.getLogger("fastswitch.frontend")
STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}
HOUSEKEEPING_S = 1.0
# Without the scheduler a request cannot be placed: one not placed within this long fails
# UNAVAILABLE (placed ones keep streaming from their workers meanwhile).
UNPLACED_TIMEOUT_S = 30.0
# A worker gone from the scheduler's directory this long is forgotten (its stream closed).
FORGET_WORKER_S = 60.0


class FrontendCore:
    def __init__(self, config: FrontendConfig, tenants: TenantRegistry) -> None:
        self.config = config
        self.tenants = tenants
        self.frontend_id = f"{config.frontend_name[:64]}.{time.time_ns():x}"
        self.requests: dict[str, FrontendRequest] = {}
        self.tokenizer: Tokenizer | None = None
        self.vocab_size = 0
        self.max_model_len = 0
        self.workers: dict[str, control_pb2.WorkerEndpoint] = {}  # the scheduler's directory
        self.streams: dict[str, Link] = {}  # worker id -> its stream
        self._absent_since_s: dict[str, float] = {}  # worker id -> left the directory
        self._ids = itertools.count()
        self.control = Link(
            "scheduler", config.scheduler_addr, config.security,
            open_call=lambda channel, messages, metadata: control_pb2_grpc.ControlStub(
                channel).FrontendSession(messages, metadata=metadata),
            opening=self._control_opening, on_message=self._on_control)
        self._tasks: list[asyncio.Task] = []
        self.metrics = FrontendMetrics(config.served_model_name or config.model,
                                       lambda: len(self.requests))

    @property
    def is_ready(self) -> bool:
        """Connected to the scheduler, and a worker serves the model."""
        return self.control.is_up and bool(self.workers) and self.tokenizer is not None

    def start(self) -> None:
        self.control.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._housekeep_forever()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for request in list(self.requests.values()):
            self._end(request, Failure(grpc.StatusCode.UNAVAILABLE, "the frontend is shutting down"))
        await self.control.stop()
        for stream in self.streams.values():
            await stream.stop()

    # ---- requests -------------------------------------------------------------------------
    def submit(self, request: FrontendRequest) -> None:
        """Mutates: the request is this frontend's until it ends; the scheduler hears of it."""
        request.request_id = f"{self.frontend_id}/{next(self._ids)}"
        self.requests[request.request_id] = request
        self.control.send(control_pb2.FrontendSessionRequest(submit=request.submit_message()))

    def cancel(self, request: FrontendRequest) -> None:
        """Mutates: the client went away: the worker and the scheduler forget the request."""
        if request.is_done:
            return
        self._forget(request)
        abort = worker_pb2.AbortCommand(request_id=request.request_id)
        if request.worker_id is not None and (stream := self.streams.get(request.worker_id)):
            stream.send(worker_pb2.StreamRequest(cancel=abort))
        self.control.send(control_pb2.FrontendSessionRequest(cancel=abort))

    def _end(self, request: FrontendRequest, final) -> None:
        """Mutates: the client's stream ends with `final` (a last response or a Failure)."""
        if request.is_done:
            return
        self._forget(request)
        self.metrics.on_end(request, final)
        request.responses.put_nowait(final)

    def _forget(self, request: FrontendRequest) -> None:
        request.is_done = True
        self.requests.pop(request.request_id, None)
        self.metrics.forget(request)

    # ---- the scheduler's session ----------------------------------------------------------
    def _control_opening(self) -> list[control_pb2.FrontendSessionRequest]:
        """A new session (either side restarted): hello, then every request still ours."""
        hello = control_pb2.FrontendSessionRequest(
            hello=control_pb2.FrontendHello(frontend_id=self.frontend_id))
        return [hello, *(control_pb2.FrontendSessionRequest(submit=r.submit_message())
                         for r in self.requests.values())]

    def _on_control(self, msg: control_pb2.FrontendSessionResponse) -> None:
        kind = msg.WhichOneof("message")
        if kind == "placements":
            for placement in msg.placements.placements:
                self._place(placement.request_id, placement.worker_id)
        elif kind == "end":
            request = self.requests.get(msg.end.request_id)
            if request is not None:
                code = STATUS_BY_CODE.get(msg.end.code, grpc.StatusCode.INTERNAL)
                self._end(request, Failure(code, msg.end.message))
        elif kind == "workers":
            self._set_workers(msg.workers)

    def _place(self, request_id: str, worker_id: str) -> None:
        """Mutates: stage the request on its (new) worker; outputs from any other worker are
        ignored from now on."""
        request = self.requests.get(request_id)
        stream = self.streams.get(worker_id)
        if request is None:
            return  # ended meanwhile; the scheduler hears the cancel
        if stream is None:
            log.warning("placed on a worker not in the directory", extra={"worker": worker_id})
            return
        request.worker_id = worker_id
        stream.send(worker_pb2.StreamRequest(stage=request.stage_command()))

    def _set_workers(self, directory: control_pb2.WorkerDirectory) -> None:
        """Mutates: a stream to every worker of the directory; the model facts from them."""
        now_s = time.monotonic()
        self.workers = {endpoint.worker_id: endpoint for endpoint in directory.workers}
        for worker_id, endpoint in self.workers.items():
            self._absent_since_s.pop(worker_id, None)
            stream = self.streams.get(worker_id)
            if stream is not None and stream.address != endpoint.address:
                self._tasks.append(asyncio.get_running_loop().create_task(stream.stop()))
                stream = None
            if stream is None:
                self.streams[worker_id] = self._open_stream(endpoint)
        for worker_id in self.streams.keys() - self.workers.keys():
            self._absent_since_s.setdefault(worker_id, now_s)
        if self.workers:
            hellos = [endpoint.hello for endpoint in self.workers.values()]
            self.max_model_len = min(hello.max_model_len for hello in hellos)
            if self.tokenizer is None:
                hello = hellos[0]
                self.vocab_size = hello.vocab_size
                specials = _Specials(hello.vocab_size, tuple(hello.eos_token_ids),
                                     hello.bos_token_id if hello.HasField("bos_token_id") else None)
                self.tokenizer = load_tokenizer(self.config.model, specials)

    # ---- the workers' streams -------------------------------------------------------------
    def _open_stream(self, endpoint: control_pb2.WorkerEndpoint) -> Link:
        worker_id = endpoint.worker_id
        stream = Link(
            f"worker {worker_id}", endpoint.address, self.config.security,
            server_name=endpoint.server_name,
            open_call=lambda channel, messages, metadata: worker_pb2_grpc.WorkerStub(
                channel).Stream(messages, metadata=metadata),
            opening=lambda: self._stream_opening(worker_id),
            on_message=lambda msg: self._on_worker(worker_id, msg))
        stream.start()
        return stream

    def _stream_opening(self, worker_id: str) -> list[worker_pb2.StreamRequest]:
        """Hello, then the requests placed on this worker that have no token yet, staged again
        (a worker ignores a stage it has): a stage sent while the stream was down is not lost.
        A request with tokens was staged there for sure."""
        hello = worker_pb2.StreamRequest(hello=worker_pb2.StreamHello(frontend_id=self.frontend_id))
        return [hello, *(worker_pb2.StreamRequest(stage=r.stage_command())
                         for r in self.requests.values()
                         if r.worker_id == worker_id and not r.generated_token_ids)]

    def _on_worker(self, worker_id: str, msg: worker_pb2.StreamResponse) -> None:
        """Mutates: one step's tokens for this frontend's requests on that worker."""
        for change in msg.state_changes:
            request = self.requests.get(change.request_id)
            if request is not None and request.worker_id == worker_id:
                request.note_state(change.state)
        for output in msg.outputs:
            request = self.requests.get(output.request_id)
            if request is None or request.worker_id != worker_id:
                continue  # ended, or moved: the new worker's tokens count
            response = request.take_output(output)
            self.metrics.on_output(request, len(output.token_ids), time.monotonic())
            if output.finish_reason:
                self._end(request, response)
            else:
                request.responses.put_nowait(response)

    # ---- housekeeping ---------------------------------------------------------------------
    async def _housekeep_forever(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                await self._housekeep(time.monotonic())
            except Exception:
                log.exception("frontend housekeeping failed")

    async def _housekeep(self, now_s: float) -> None:
        """Mutates: fails requests no scheduler could place in time; closes the streams of
        workers long gone from the directory."""
        if not self.control.is_up and now_s - self.control.down_since_s > UNPLACED_TIMEOUT_S:
            for request in list(self.requests.values()):
                if request.worker_id is None and now_s - request.arrival_s > UNPLACED_TIMEOUT_S:
                    self._end(request, Failure(grpc.StatusCode.UNAVAILABLE,
                                               "the scheduler is unreachable"))
        for worker_id, since_s in list(self._absent_since_s.items()):
            if now_s - since_s > FORGET_WORKER_S:
                del self._absent_since_s[worker_id]
                if (stream := self.streams.pop(worker_id, None)) is not None:
                    await stream.stop()


@dataclass(frozen=True)
class _Specials:
    """The model facts a worker announces, as the tokenizer wants them."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
