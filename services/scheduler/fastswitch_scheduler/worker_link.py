"""The scheduler's session with one worker: commands down, step events up, reconnects.

The only module that speaks fastswitch.v1.Worker. A worker holds one scheduler session; the
scheduler announces its epoch (start time) when it opens one, and a worker hands its session to
the newest scheduler: an older one is refused (FAILED_PRECONDITION) and retries slowly, so two
schedulers during a rolling update never take the worker from each other in turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import grpc

from fastswitch import transport
from fastswitch.v1 import worker_pb2, worker_pb2_grpc

log = logging.getLogger("fastswitch.scheduler.link")
RECONNECT_DELAY_S = 0.5
SUPERSEDED_RETRY_S = 5.0  # a newer scheduler holds the worker: look again now and then
# A worker says something at least every second (steps, or heartbeats when idle); silence this
# long means it hangs (stopped, partitioned): give it up and move its requests. gRPC keepalive
# alone took 60 s to notice a stopped worker.
SESSION_SILENCE_S = 10.0
SILENCE_CHECK_S = 1.0


class WorkerSilentError(Exception):
    """The worker's session went silent for SESSION_SILENCE_S: treat it as lost."""


class WorkerLink:
    """Mutated on the scheduler's asyncio loop only."""

    def __init__(self, address: str, security: transport.TransportSecurity, *,
                 server_name: str = "", epoch: int = 0,
                 on_ready: Callable[[WorkerLink], None],
                 on_event: Callable[[WorkerLink, worker_pb2.StepEvent], None],
                 on_lost: Callable[[WorkerLink], Awaitable[None] | None]) -> None:
        self.address = address
        self.security = security
        self.server_name = server_name  # the name TLS verifies (the address may be a pod IP)
        self.epoch = epoch
        self.is_superseded = False  # a newer scheduler holds this worker's session
        self.worker_id = address  # replaced by the worker's own id from its hello
        self.hello: worker_pb2.WorkerHello | None = None
        self.capacity = None
        self.swap = None
        self.is_ready = False
        self.is_draining = False  # finishing its requests; takes no new ones
        self._on_ready = on_ready
        self._on_event = on_event
        self._on_lost = on_lost
        self._outbox: asyncio.Queue[worker_pb2.SessionRequest | None] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._heard_s = 0.0  # time.monotonic() of the worker's latest message
        self._is_silent = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.address}")

    async def stop(self) -> None:
        """Ends the session task. A cancellation that a library swallows is repeated rather
        than waited on forever."""
        if self._task is None:
            return
        while not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)
        if not self._task.cancelled() and self._task.exception() is not None:
            log.warning("worker session task ended with an error", extra={"worker": self.worker_id})

    def send(self, msg: worker_pb2.SessionRequest) -> None:
        if self.is_ready:
            self._outbox.put_nowait(msg)

    @property
    def capacity_tokens(self) -> int:
        if self.capacity is None:
            return 0
        return self.capacity.num_gpu_blocks * self.capacity.block_size

    async def _commands(self):
        while (msg := await self._outbox.get()) is not None:
            yield msg

    async def _run(self) -> None:
        while True:
            try:
                async with transport.channel(self.address, self.security, inject_token=False,
                                             server_name=self.server_name) as channel:
                    await self._session(worker_pb2_grpc.WorkerStub(channel))
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                was_superseded = self.is_superseded
                self.is_superseded = exc.code() is grpc.StatusCode.FAILED_PRECONDITION
                if self.is_ready or self.is_superseded != was_superseded:
                    log.warning("worker session lost", extra={
                        "worker": self.worker_id, "code": exc.code().name,
                        "details": (exc.details() or "")[:200]})
            except WorkerSilentError as exc:
                log.warning("worker session lost", extra={"worker": self.worker_id, "reason": str(exc)})
            except Exception:
                log.exception("worker session failed", extra={"worker": self.worker_id})
            await self._lose()
            await asyncio.sleep(SUPERSEDED_RETRY_S if self.is_superseded else RECONNECT_DELAY_S)

    async def _session(self, stub: worker_pb2_grpc.WorkerStub) -> None:
        self._outbox = asyncio.Queue()
        call = stub.Session(self._commands(), metadata=(
            (transport.SCHEDULER_EPOCH_METADATA, str(self.epoch)),
            *transport.stream_metadata(self.security)))
        self._heard_s = time.monotonic()
        self._is_silent = False
        watchdog = asyncio.get_running_loop().create_task(self._watch_silence(call))
        try:
            await self._read_session(call)
        finally:
            watchdog.cancel()
        if self._is_silent:
            raise WorkerSilentError(f"no message from the worker for {SESSION_SILENCE_S:g} s")

    async def _watch_silence(self, call) -> None:
        """Ends the call once the worker has said nothing for SESSION_SILENCE_S (one timer
        for the session, not one per message)."""
        while True:
            await asyncio.sleep(SILENCE_CHECK_S)
            if time.monotonic() - self._heard_s > SESSION_SILENCE_S:
                self._is_silent = True
                call.cancel()
                return

    async def _read_session(self, call) -> None:
        while True:
            try:
                response = await call.read()
            except asyncio.CancelledError:
                if self._is_silent:
                    return  # our watchdog cancelled the call
                raise
            self._heard_s = time.monotonic()
            if response is grpc.aio.EOF:
                return
            kind = response.WhichOneof("event")
            if kind == "hello":
                self.hello = response.hello
                self.worker_id = response.hello.worker_id
                self.capacity = response.hello.capacity
                self.is_ready = True
                self.is_superseded = False
                self.is_draining = False
                log.info("worker connected", extra={"worker": self.worker_id, "address": self.address})
                self._on_ready(self)
            elif kind == "step":
                if response.step.HasField("capacity"):
                    self.capacity = response.step.capacity
                if response.step.HasField("swap"):
                    self.swap = response.step.swap
                self.is_draining = response.step.is_draining
                self._on_event(self, response.step)

    async def _lose(self) -> None:
        was_ready = self.is_ready
        self.is_ready = False
        self._outbox.put_nowait(None)
        if was_ready:
            result = self._on_lost(self)
            if result is not None:
                await result
