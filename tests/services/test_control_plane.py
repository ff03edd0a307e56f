"""The control plane apart from the data plane, end to end on 127.0.0.1: a scheduler that
restarts mid-stream fails no request a worker holds; a frontend that dies loses only its own
streams (the workers and the scheduler free its requests, and never block on it); tokens reach
the client without passing the scheduler; tenants are charged as the frontend authenticated."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc

import fastswitch_scheduler.core
import fastswitch_worker.service.frontend_outbox
from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_frontend.server import FrontendServer

DEADLINE_S = 60.0
PROMPT = [11, 250, 3, 77, 8, 19, 140, 5, 61, 200, 33, 4, 90]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def generate_request(request_id: str, max_tokens: int) -> scheduler_pb2.GenerateRequest:
    return scheduler_pb2.GenerateRequest(
        request_id=request_id, token_ids=scheduler_pb2.TokenIds(ids=PROMPT),
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))


class Stream:
    """One client stream, read in the background: its tokens, its end."""

    def __init__(self, stub, request_id: str, max_tokens: int, token: str = "tok-a") -> None:
        self.tokens: list[int] = []
        self.final: scheduler_pb2.GenerateResponse | None = None
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.ensure_future(self._read(stub, generate_request(request_id, max_tokens), token))

    async def _read(self, stub, request, token) -> None:
        try:
            async for response in stub.Generate(request, metadata=auth(token)):
                self.tokens.extend(response.token_ids)
                if response.finish_reason:
                    self.final = response
        except grpc.aio.AioRpcError as exc:
            self.error = exc


async def until(predicate, what: str, timeout_s: float = DEADLINE_S) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)
    assert predicate(), what


async def test_a_scheduler_restart_mid_stream_fails_no_request_and_changes_no_token(stack_factory):
    """Requests running, preempted and queued when the scheduler stops all complete, with the
    tokens an uninterrupted run gives: the workers keep running (and streaming to the frontend)
    what they hold, the new scheduler adopts it from their hellos and the frontend's
    resubmissions, and admits what was queued."""
    async with stack_factory(num_workers=2, max_running_per_worker=2) as stack:
        reference = Stream(stack.stub, "reference", 24)
        await reference.task
        assert reference.error is None and len(reference.tokens) == 24
        streams = [Stream(stack.stub, f"r{i}", 400) for i in range(6)]
        await until(lambda: sum(bool(s.tokens) for s in streams) >= 4, "four streams started")
        old_epoch = stack.scheduler.core.epoch
        await asyncio.wait_for(stack.restart_scheduler(), DEADLINE_S)
        assert stack.scheduler.core.epoch != old_epoch
        assert len(stack.scheduler.core.requests) >= 1, "requests in flight were adopted"
        await asyncio.wait_for(asyncio.gather(*(s.task for s in streams)), DEADLINE_S)
        for stream in streams:
            assert stream.error is None, stream.error
            assert len(stream.tokens) == 400 and stream.tokens[:24] == reference.tokens
            assert stream.final.finish_reason == common_pb2.FINISH_REASON_LENGTH
        after = Stream(stack.stub, "after", 24)
        await after.task
        assert after.tokens == reference.tokens
        alice = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(),
                                             metadata=auth("tok-a"))
        assert alice.tenants[0].num_served_generated_tokens > 0  # the new scheduler charges


async def test_a_frontend_that_dies_loses_only_its_own_streams(stack_factory, monkeypatch):
    monkeypatch.setattr(fastswitch_scheduler.core, "FRONTEND_GRACE_S", 1.0)
    monkeypatch.setattr(fastswitch_worker.service.frontend_outbox, "FRONTEND_GRACE_S", 1.0)
    async with stack_factory(num_workers=1, max_running_per_worker=8) as stack:
        doomed = FrontendServer(dataclasses.replace(
            stack.frontend.config, listen="127.0.0.1:0", frontend_name="doomed"))
        await doomed.start()
        await until(lambda: doomed.is_serving, "the second frontend serves")
        async with grpc.aio.insecure_channel(doomed.address) as channel:
            doomed_stub = scheduler_pb2_grpc.SchedulerStub(channel)
            lost = [Stream(doomed_stub, f"lost-{i}", 2000) for i in range(3)]
            kept = [Stream(stack.stub, f"kept-{i}", 300) for i in range(3)]
            await until(lambda: all(s.tokens for s in lost + kept), "every stream started")
            doomed_id = doomed.core.frontend_id
            # The frontend goes without a word to anyone (its streams to the scheduler and to
            # the worker just end), as a killed process does.
            doomed.core.control._task.cancel()
            for link in doomed.core.streams.values():
                link._task.cancel()
            await doomed.server.stop(0)
            await asyncio.wait_for(asyncio.gather(*(s.task for s in lost)), DEADLINE_S)
            assert all(s.error is not None and s.final is None for s in lost)
        worker = stack.workers[0].service
        core = stack.scheduler.core
        await until(lambda: not any(r.frontend_id == doomed_id for r in core.requests.values())
                    and not worker.held.of_frontend(doomed_id) and doomed_id not in worker.outboxes,
                    "the scheduler and the worker freed the dead frontend's requests")
        await asyncio.wait_for(asyncio.gather(*(s.task for s in kept)), DEADLINE_S)
        assert all(s.error is None and len(s.tokens) == 300 for s in kept)
        await doomed.stop(0)


async def test_the_scheduler_hears_counts_and_charges_the_authenticated_tenant(stack_factory):
    """What crosses the control plane per step: counts and state changes, no token ids; the
    tenant charged is the one the frontend authenticated (alice's token)."""
    async with stack_factory() as stack:
        seen = []
        link = next(iter(stack.scheduler.core.links.values()))
        original = link._on_event
        link._on_event = lambda worker, event: (seen.append(event), original(worker, event))[-1]
        stream = Stream(stack.stub, "counted", 16)
        await stream.task
        assert len(stream.tokens) == 16
        await stack.until_scheduler_idle()
        assert sum(p.num_new_tokens for event in seen for p in event.progress) == 16
        assert "outputs" not in seen[0].DESCRIPTOR.fields_by_name  # no field could carry tokens
        served = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(),
                                              metadata=auth("tok-a"))
        assert [(t.name, t.num_served_generated_tokens) for t in served.tenants] == [("alice", 16)]
