"""One scheduler session per worker: a newer (or equal) epoch takes it over and the old stream
ends ABORTED at once, while the requests in flight carry on and are listed in the new hello;
an older epoch is refused while the holder is there; only callers with the cluster credential
get a session; admits and stages are bounded."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fastswitch import transport
from fastswitch_worker.service.session import SUPERSEDED_MESSAGE, parse_epoch
from fastswitch_worker.service.worker_service import MAX_REQUEST_ID_CHARS

HANDOVER_DEADLINE_S = 2.0


@pytest.mark.parametrize("new_epoch", [11, 10])
async def test_a_newer_or_equal_epoch_supersedes_and_the_old_stream_ends_aborted_at_once(
        start_worker, open_session, probe, new_epoch: int) -> None:
    worker = await start_worker()
    old = open_session(worker, epoch=10)
    await old.hello()
    old.admit("old-long", max_tokens=2000)  # still running when the hand-over comes
    await old.read_until(lambda s: "old-long" in s.tokens)

    new = open_session(worker, epoch=new_epoch, frontend_id="frontend-2")
    hello = await new.hello()
    code, message = await old.end_status(timeout_s=HANDOVER_DEADLINE_S)
    assert (code, message) == (grpc.StatusCode.ABORTED, SUPERSEDED_MESSAGE)

    # The old scheduler's request goes on (its frontend still streams it) and the new
    # scheduler learns of it from the hello, to adopt it; the new one's requests are served.
    held = {h.request_id: h for h in hello.held}
    assert held["old-long"].is_admitted and held["old-long"].frontend_id == old.frontend_id
    new.admit("new-1")
    await new.read_until(lambda s: s.is_finished("new-1"))
    assert len(new.tokens["new-1"]) == 4 and new.error_code("new-1") is None
    before = len(old.tokens["old-long"])
    await new.read_until(lambda s: len(old.tokens["old-long"]) > before + 2)
    assert await probe.on_engine(worker, lambda e: "old-long" in e.requests) is True
    assert worker.service.session is not None and worker.service.session.epoch == new_epoch


async def test_commands_sent_on_a_superseded_stream_are_ignored(start_worker, open_session,
                                                                probe) -> None:
    worker = await start_worker()
    old = open_session(worker, epoch=1)
    await old.hello()
    new = open_session(worker, epoch=2, frontend_id="frontend-2")
    await new.hello()
    assert (await old.end_status())[0] is grpc.StatusCode.ABORTED
    old.admit("from-the-past")  # may still be written; the worker must not run it
    new.admit("current")
    await new.read_until(lambda s: s.is_finished("current"))
    assert await probe.on_engine(worker, lambda e: "from-the-past" in e.requests) is False


async def test_a_lower_epoch_is_refused_while_the_holder_is_connected(start_worker,
                                                                     open_session) -> None:
    worker = await start_worker()
    holder = open_session(worker, epoch=1_700_000_000_000_000_000)
    await holder.hello()
    intruder = open_session(worker, epoch=5)
    code, message = await intruder.end_status()
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert message == "a newer scheduler (epoch 1700000000000000000) holds this worker's session"
    # The holder keeps its session and is served as before.
    holder.admit("still-mine")
    await holder.read_until(lambda s: s.is_finished("still-mine"))
    assert holder.error_code("still-mine") is None


async def test_after_the_holder_leaves_a_lower_epoch_may_connect(start_worker,
                                                                 open_session) -> None:
    worker = await start_worker()
    holder = open_session(worker, epoch=50)
    await holder.hello()
    holder.hang_up()
    assert (await holder.end_status())[0] is grpc.StatusCode.OK
    successor = open_session(worker, epoch=3)
    hello = await successor.hello()
    assert hello.worker_id == "test-worker"
    successor.admit("after")
    await successor.read_until(lambda s: s.is_finished("after"))


async def test_a_session_without_the_cluster_credential_is_unauthenticated(
        start_worker, open_session) -> None:
    worker = await start_worker()
    holder = open_session(worker, epoch=1)
    await holder.hello()
    for security in (transport.TransportSecurity(),
                     transport.TransportSecurity(cluster_token="not-the-cluster-token-at-all")):
        stranger = open_session(worker, epoch=99, security=security)
        code, _ = await stranger.end_status()
        assert code is grpc.StatusCode.UNAUTHENTICATED
    # The stranger's higher epoch took nothing over.
    holder.admit("unaffected")
    await holder.read_until(lambda s: s.is_finished("unaffected"))


async def test_oversized_or_empty_ids_and_prompts_are_refused_invalid_argument(
        start_worker, open_session) -> None:
    worker = await start_worker()
    session = open_session(worker)
    hello = await session.hello()
    long_id = "x" * (MAX_REQUEST_ID_CHARS + 1)
    session.admit("")
    session.admit(long_id)
    session.admit("too-long-prompt", [7] * (hello.max_model_len + 1))
    session.admit("fine")
    truncated_id = long_id[:MAX_REQUEST_ID_CHARS]
    await session.read_until(lambda s: all(s.is_finished(r) for r in (
        "", truncated_id, "too-long-prompt", "fine")))
    for request_id in ("", truncated_id, "too-long-prompt"):
        assert session.error_code(request_id) is grpc.StatusCode.INVALID_ARGUMENT, request_id
    assert "context" in session.error_reason("too-long-prompt")
    assert session.error_code("fine") is None and len(session.tokens["fine"]) == 4
    assert "fine" not in worker.service.held


async def test_a_drain_ends_the_session_with_ok_after_its_refusals(start_worker,
                                                                  open_session) -> None:
    worker = await start_worker(drain_timeout_s=0.0)
    session = open_session(worker)
    await session.hello()
    session.admit("long", max_tokens=2000)
    await session.read_until(lambda s: "long" in s.tokens)
    await asyncio.wait_for(worker.service.drain(), HANDOVER_DEADLINE_S)
    code, _ = await session.end_status(timeout_s=HANDOVER_DEADLINE_S)
    assert code is grpc.StatusCode.OK
    assert session.error_code("long") is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("metadata,epoch", [
    ((), 0), (((transport.SCHEDULER_EPOCH_METADATA, "1712345678901234567"),), 1712345678901234567),
    (((transport.SCHEDULER_EPOCH_METADATA, "-4"),), 0),
    (((transport.SCHEDULER_EPOCH_METADATA, " 7"),), 0),
    (((transport.SCHEDULER_EPOCH_METADATA, "0x10"),), 0),
    (((transport.SCHEDULER_EPOCH_METADATA, "\u0663"),), 0),  # a non-ASCII digit
    (((transport.SCHEDULER_EPOCH_METADATA, "9" * 400),), 0),
    (((transport.SCHEDULER_EPOCH_METADATA, b"42"),), 42),
])
def test_the_epoch_is_a_decimal_integer_and_anything_else_counts_as_zero(metadata, epoch) -> None:
    assert parse_epoch(metadata) == epoch
