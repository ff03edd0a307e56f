"""A real WorkerServer (tiny preset model, CPU) on 127.0.0.1:0 and scheduler-side sessions to
it over real gRPC channels that present the cluster token, as the scheduler's do; each session
also opens the stream a frontend opens, to stage requests and receive their tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch import transport
from fastswitch.v1 import common_pb2, worker_pb2, worker_pb2_grpc
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.server import WorkerServer

CLUSTER_TOKEN = "worker-service-tests-token-0123456789"
SECURITY = transport.TransportSecurity(cluster_token=CLUSTER_TOKEN)
ENGINE = dict(model="tiny", block_size=4, kv_cache_bytes=4 << 20, host_kv_bytes=16 << 20,
              max_num_batched_tokens=64)
DEADLINE_S = 10.0  # bound on every wait; tests finish far sooner
STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}


class SchedulerSession:
    """One Worker/Session stream opened the way a scheduler opens it (commands down, counts
    up), and one Worker/Stream opened the way a frontend opens it (stages down, tokens up).
    Records every finish, token and state change it reads."""

    def __init__(self, channel: grpc.aio.Channel, epoch: int | str | None = None, *,
                 frontend_id: str = "test-frontend") -> None:
        self.frontend_id = frontend_id
        self._outbox: asyncio.Queue[worker_pb2.SessionRequest | None] = asyncio.Queue()
        metadata = (((transport.SCHEDULER_EPOCH_METADATA, str(epoch)),)
                    if epoch is not None else ())
        stub = worker_pb2_grpc.WorkerStub(channel)
        self.call = stub.Session(self._commands(self._outbox), metadata=metadata)
        self._stream_outbox: asyncio.Queue[worker_pb2.StreamRequest | None] = asyncio.Queue()
        self._stream_outbox.put_nowait(worker_pb2.StreamRequest(
            hello=worker_pb2.StreamHello(frontend_id=frontend_id)))
        self.stream = stub.Stream(self._commands(self._stream_outbox))
        self._stream_reader = asyncio.ensure_future(self._read_stream())
        self.tokens: dict[str, list[int]] = {}
        self.finish_reasons: dict[str, int] = {}
        self.changes: list[worker_pb2.RequestStateChange] = []
        self.stream_error: grpc.aio.AioRpcError | None = None

    @staticmethod
    async def _commands(outbox: asyncio.Queue):
        while (msg := await outbox.get()) is not None:
            yield msg

    async def _read_stream(self) -> None:
        try:
            async for response in self.stream:
                for output in response.outputs:
                    self.tokens.setdefault(output.request_id, []).extend(output.token_ids)
        except grpc.aio.AioRpcError as exc:  # the tests look at the session's status instead
            self.stream_error = exc

    def send(self, msg: worker_pb2.SessionRequest) -> None:
        self._outbox.put_nowait(msg)

    def stage(self, request_id: str, prompt: list[int] | None = None, *, max_tokens: int = 4,
              **sampling) -> None:
        """The frontend's part: the request's data, over the stream."""
        self._stream_outbox.put_nowait(worker_pb2.StreamRequest(stage=worker_pb2.StageCommand(
            request_id=request_id, prompt_token_ids=prompt or [1, 40, 41, 42, 43],
            sampling=common_pb2.SamplingParams(**sampling),
            stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))))

    def admit(self, request_id: str, prompt: list[int] | None = None, *, max_tokens: int = 4,
              **sampling) -> None:
        """Stage (the frontend) and admit (the scheduler)."""
        self.stage(request_id, prompt, max_tokens=max_tokens, **sampling)
        self.send(worker_pb2.SessionRequest(admit=worker_pb2.AdmitCommand(request_id=request_id)))

    def hang_up(self) -> None:
        """The scheduler closes its side of the session."""
        self._outbox.put_nowait(None)

    def close_stream(self) -> None:
        """The frontend closes its side of the stream."""
        self._stream_outbox.put_nowait(None)

    async def hello(self) -> worker_pb2.WorkerHello:
        response = await asyncio.wait_for(self.call.read(), DEADLINE_S)
        assert response.WhichOneof("event") == "hello", response
        return response.hello

    async def read_until(self, predicate: Callable[[SchedulerSession], bool],
                         timeout_s: float = DEADLINE_S) -> None:
        """Read events until `predicate(self)` holds; raises TimeoutError, or AioRpcError when
        the stream ends with an error first."""
        async with asyncio.timeout(timeout_s):
            while not predicate(self):
                response = await self.call.read()
                assert response is not grpc.aio.EOF, "the stream ended first"
                self._record(response)

    async def end_status(self, timeout_s: float = DEADLINE_S) -> tuple[grpc.StatusCode, str]:
        """Reads to the end of the stream; returns its status and message."""
        async with asyncio.timeout(timeout_s):
            try:
                while (response := await self.call.read()) is not grpc.aio.EOF:
                    self._record(response)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()
            return await self.call.code(), await self.call.details()

    def _record(self, response: worker_pb2.SessionResponse) -> None:
        if response.WhichOneof("event") != "step":
            return
        for progress in response.step.progress:
            if progress.finish_reason:
                self.finish_reasons[progress.request_id] = progress.finish_reason
        self.changes.extend(response.step.state_changes)

    def error_code(self, request_id: str) -> grpc.StatusCode | None:
        """The status the worker reported for a request it refused or failed, if any."""
        return next((STATUS_BY_CODE[c.error_code] for c in self.changes
                     if c.request_id == request_id and c.error_code), None)

    def error_reason(self, request_id: str) -> str:
        return next(c.reason for c in self.changes if c.request_id == request_id and c.error_code)

    def is_finished(self, request_id: str) -> bool:
        return (self.finish_reasons.get(request_id) == common_pb2.FINISH_REASON_LENGTH
                or self.error_code(request_id) is not None)


@pytest.fixture
async def start_worker():
    """start_worker(engine={EngineConfig overrides}, **WorkerConfig overrides) -> a started
    WorkerServer; every one is stopped at the end of the test."""
    servers: list[WorkerServer] = []

    async def start(*, engine: dict | None = None, **overrides) -> WorkerServer:
        settings = dict(listen="127.0.0.1:0", worker_id="test-worker", drain_timeout_s=0.5,
                        security=SECURITY)
        config = WorkerConfig(engine=EngineConfig(**{**ENGINE, **(engine or {})}),
                              **{**settings, **overrides})
        server = WorkerServer(config)
        servers.append(server)
        await server.start()
        assert server.service.is_serving
        return server

    yield start
    for server in servers:
        await server.stop(0)


@pytest.fixture
async def open_session():
    """open_session(server, epoch=None, security=..., frontend_id=...) -> a SchedulerSession
    on a channel of its own (closed at the end of the test); the cluster token is presented by
    default; each session's stream is a frontend of its own unless `frontend_id` says."""
    channels: list[grpc.aio.Channel] = []

    def open_(server: WorkerServer, epoch: int | str | None = None, *,
              security: transport.TransportSecurity = SECURITY,
              frontend_id: str | None = None) -> SchedulerSession:
        channel = transport.channel(server.address, security)
        channels.append(channel)
        return SchedulerSession(channel, epoch,
                                frontend_id=frontend_id or f"test-frontend-{len(channels)}")

    yield open_
    for channel in channels:
        await channel.close()


class StepFault:
    """In-process fault injection on the real engine: its model runner raises for the next
    `num_failures` batches it is given, recording each failed batch's request ids."""

    def __init__(self, num_failures: int) -> None:
        self.num_failures = num_failures
        self.failed_batches: list[tuple[str, ...]] = []

    def install(self, engine: Engine) -> None:
        run = engine.runner.run

        def failing_run(chunks):
            if self.num_failures > 0:
                self.num_failures -= 1
                self.failed_batches.append(tuple(c.request.request_id for c in chunks))
                raise RuntimeError("injected model fault")
            return run(chunks)

        engine.runner.run = failing_run


class Probe:
    """Health as a Kubernetes probe asks for it (no credential), and the tests' own access to
    the engine thread."""

    async def status(self, server: WorkerServer, service: str) -> int:
        async with grpc.aio.insecure_channel(server.address) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5)
            return response.status

    async def wait(self, server: WorkerServer, service: str, status: int,
                   timeout_s: float = DEADLINE_S) -> None:
        async with asyncio.timeout(timeout_s):
            while await self.status(server, service) != status:
                await asyncio.sleep(0.02)

    async def on_engine(self, server: WorkerServer, fn: Callable[[Engine], object]) -> object:
        """fn(engine) on the engine thread, in order with the sessions' commands."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def command(engine: Engine) -> None:
            try:
                result = fn(engine)
            except Exception as exc:
                loop.call_soon_threadsafe(future.set_exception, exc)
                return
            loop.call_soon_threadsafe(future.set_result, result)

        server.service.engine_loop.submit(command)
        return await asyncio.wait_for(future, DEADLINE_S)

    async def inject_step_fault(self, server: WorkerServer, num_failures: int) -> StepFault:
        """From the next batch on, the model runner raises `num_failures` times."""
        fault = StepFault(num_failures)
        await self.on_engine(server, fault.install)
        return fault


@pytest.fixture
def probe() -> Probe:
    return Probe()
