"""No request can wedge a worker: extreme sampling parameters are served, a failed engine step
costs only its own requests (INTERNAL), an engine beyond repair takes health down and tells
serve() to exit, and liveness follows the engine loop's heartbeat."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest

from fastswitch.grpc_server import LIVENESS_SERVICE, NOT_SERVING, SERVING
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.service.engine_loop import MAX_CONSECUTIVE_STEP_FAILURES
from fastswitch_worker.service.server import SERVICE_NAME

DEADLINE_S = 10.0
EXTREME_SAMPLING = {
    "temperature-1e-40": dict(temperature=1e-40),
    "temperature-1e-30": dict(temperature=1e-30, seed=3),
    "temperature-1e30": dict(temperature=1e30, seed=4),
    "top-k-huge": dict(temperature=1.0, top_k=2**31 - 1),
    "top-p-tiny": dict(temperature=1.0, top_p=1e-30, seed=5),
    "all-at-once": dict(temperature=1e-5, top_k=2**31 - 1, top_p=1e-30),
}


async def assert_serving(probe, worker) -> None:
    for service in ("", SERVICE_NAME, LIVENESS_SERVICE):
        assert await probe.status(worker, service) == SERVING, service
    assert worker.service.failure is None and not worker.failed.is_set()


async def test_extreme_sampling_parameters_produce_tokens_and_the_worker_keeps_serving(
        start_worker, open_session, probe) -> None:
    worker = await start_worker()
    session = open_session(worker)
    await session.hello()
    for request_id, sampling in EXTREME_SAMPLING.items():
        session.admit(request_id, max_tokens=4, **sampling)
    await session.read_until(lambda s: all(s.is_finished(r) for r in EXTREME_SAMPLING))
    for request_id in EXTREME_SAMPLING:
        assert session.error_code(request_id) is None, session.error_reason(request_id)
        assert len(session.tokens[request_id]) == 4
    await assert_serving(probe, worker)
    session.admit("afterwards")
    await session.read_until(lambda s: s.is_finished("afterwards"))
    assert len(session.tokens["afterwards"]) == 4


async def test_a_failed_step_aborts_exactly_its_requests_with_internal_and_later_ones_complete(
        start_worker, open_session, probe) -> None:
    worker = await start_worker(engine=dict(max_num_seqs=1))  # one request per step
    session = open_session(worker)
    await session.hello()
    fault = await probe.inject_step_fault(worker, num_failures=1)
    session.admit("victim")
    session.admit("bystander")  # waits for a slot: not in the failing step
    await session.read_until(lambda s: s.is_finished("victim") and s.is_finished("bystander"))
    assert fault.failed_batches == [("victim",)]
    assert session.error_code("victim") is grpc.StatusCode.INTERNAL
    assert "RuntimeError" in session.error_reason("victim")
    assert session.error_code("bystander") is None and len(session.tokens["bystander"]) == 4

    session.admit("after")
    await session.read_until(lambda s: s.is_finished("after"))
    assert session.error_code("after") is None and len(session.tokens["after"]) == 4
    await assert_serving(probe, worker)

    def kv_is_all_free(engine: Engine) -> bool:
        engine.kv.check_integrity()
        return (engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
                and engine.kv.host.num_free_blocks == engine.kv.host.num_blocks)

    assert await probe.on_engine(worker, kv_is_all_free)


async def assert_unrecoverable(probe, worker, session) -> None:
    """Health NOT_SERVING everywhere, `failed` set (serve() exits 1), the session ended
    UNAVAILABLE, and no new session is accepted."""
    await asyncio.wait_for(worker.failed.wait(), DEADLINE_S)
    for service in ("", SERVICE_NAME, LIVENESS_SERVICE):
        assert await probe.status(worker, service) == NOT_SERVING, service
    code, _ = await session.end_status()
    assert code is grpc.StatusCode.UNAVAILABLE


async def test_repeated_step_failures_make_the_worker_unrecoverable(
        start_worker, open_session, probe) -> None:
    worker = await start_worker()
    session = open_session(worker)
    await session.hello()
    await probe.inject_step_fault(worker, num_failures=1000)
    request_ids = [f"r{i}" for i in range(MAX_CONSECUTIVE_STEP_FAILURES)]
    for request_id in request_ids:  # one at a time: each failure is a step of its own
        await assert_serving(probe, worker)
        session.admit(request_id)
        await session.read_until(lambda s, rid=request_id: s.is_finished(rid))
        assert session.error_code(request_id) is grpc.StatusCode.INTERNAL
    await assert_unrecoverable(probe, worker, session)
    assert "in a row" in str(worker.service.failure)
    late = open_session(worker, epoch=10**18)
    assert (await late.end_status())[0] is grpc.StatusCode.UNAVAILABLE


async def test_a_step_failure_that_breaks_the_kv_bookkeeping_is_unrecoverable_at_once(
        start_worker, open_session, probe) -> None:
    worker = await start_worker()
    session = open_session(worker)
    await session.hello()
    fault = await probe.inject_step_fault(worker, num_failures=1)

    def corrupt_then_fail(engine: Engine) -> None:
        run = engine.runner.run

        def run_and_lose_a_block(chunks):
            engine.kv.gpu._num_free_blocks += 1  # bookkeeping the abort path cannot repair
            return run(chunks)

        engine.runner.run = run_and_lose_a_block

    await probe.on_engine(worker, corrupt_then_fail)
    session.admit("doomed")
    await session.read_until(lambda s: s.is_finished("doomed"))
    assert fault.failed_batches == [("doomed",)]
    assert session.error_code("doomed") is grpc.StatusCode.INTERNAL
    await assert_unrecoverable(probe, worker, session)
    assert type(worker.service.failure).__name__ == "EngineInconsistentError"


class LoopKiller(BaseException):
    """Not an Exception: escapes the loop's per-command guard and ends the thread."""


async def test_a_crashed_engine_loop_is_unrecoverable(start_worker, open_session, probe) -> None:
    worker = await start_worker()
    session = open_session(worker)
    await session.hello()

    def crash(engine: Engine) -> None:
        raise LoopKiller("engine thread crashed")

    worker.service.engine_loop.submit(crash)
    await assert_unrecoverable(probe, worker, session)
    assert isinstance(worker.service.failure, LoopKiller)


@pytest.mark.parametrize("liveness_timeout_s", [0.3])
async def test_liveness_goes_not_serving_while_the_engine_loop_is_stuck(
        start_worker, probe, liveness_timeout_s: float) -> None:
    worker = await start_worker(liveness_timeout_s=liveness_timeout_s)
    await probe.wait(worker, LIVENESS_SERVICE, SERVING)
    release = threading.Event()
    worker.service.engine_loop.submit(lambda engine: release.wait(DEADLINE_S))
    try:
        await probe.wait(worker, LIVENESS_SERVICE, NOT_SERVING)
        # Readiness is about taking work, not about progress: it does not flap with liveness.
        assert await probe.status(worker, "") == SERVING
        assert await probe.status(worker, SERVICE_NAME) == SERVING
    finally:
        release.set()
    await probe.wait(worker, LIVENESS_SERVICE, SERVING)
    assert not worker.failed.is_set()


async def test_an_idle_engine_stays_live(start_worker, probe) -> None:
    worker = await start_worker(liveness_timeout_s=0.3)
    deadline = asyncio.get_running_loop().time() + 0.8  # a few liveness timeouts, idle
    while asyncio.get_running_loop().time() < deadline:
        assert await probe.status(worker, LIVENESS_SERVICE) == SERVING
        await asyncio.sleep(0.05)
