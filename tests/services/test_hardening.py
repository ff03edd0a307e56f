"""The scheduler's public port under hostile input, overload and lost workers, through real gRPC
servers on 127.0.0.1 (scheduler, workers, kvstore on a real Redis): every call gets a definite
status, none of them UNKNOWN or INTERNAL, and the stack keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import math

import grpc
import pytest

from fastswitch import transport
from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc, worker_pb2, worker_pb2_grpc
from fastswitch_frontend.server import FrontendServer
from fastswitch_scheduler.server import SchedulerServer
from fastswitch_scheduler.worker_link import RECONNECT_DELAY_S, SUPERSEDED_RETRY_S

GARBAGE = b"\xff\xff\xff\xff"  # not a protobuf message
STEP_S = 30.0  # no single step of these tests may take longer: a hang fails where it happens
PROMPT = [11, 250, 3, 77, 8, 19, 140, 5, 61, 200, 33, 4, 90]


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def generate_request(max_tokens=6, **kwargs) -> scheduler_pb2.GenerateRequest:
    stop = kwargs.pop("stop", common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))
    return scheduler_pb2.GenerateRequest(token_ids=scheduler_pb2.TokenIds(ids=PROMPT), stop=stop,
                                         **kwargs)


async def tokens_of(stub, request, token="tok-a") -> list[int]:
    return [t async for r in stub.Generate(request, metadata=auth(token)) for t in r.token_ids]


async def status_of(call) -> grpc.StatusCode:
    try:
        result = await call if not hasattr(call, "__aiter__") else [r async for r in call]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    assert result is not None
    return grpc.StatusCode.OK


@pytest.mark.parametrize("temperature", [1e-40, 1e-30, 1e-8, 1e-5, 50.0])
async def test_extreme_but_finite_temperatures_are_served(stack_factory, temperature):
    """temperature=1e-40 used to overflow the logits and kill the worker's engine thread."""
    async with stack_factory() as stack:
        sampling = common_pb2.SamplingParams(temperature=temperature, top_k=1 << 30, top_p=1e-9, seed=3)
        assert len(await tokens_of(stack.stub, generate_request(sampling=sampling))) == 6
        assert len(await tokens_of(stack.stub, generate_request())) == 6  # still serving


SAMPLING_REFUSED = [
    dict(temperature=math.inf), dict(temperature=-math.inf), dict(temperature=math.nan),
    dict(temperature=1e30), dict(temperature=-1e-40), dict(top_p=math.nan), dict(top_p=-0.5),
    dict(top_p=math.inf), dict(top_k=-1),
]


async def test_hostile_requests_get_invalid_argument_and_the_stack_keeps_serving(stack_factory):
    async with stack_factory() as stack:
        stub = stack.stub
        hostile = [generate_request(sampling=common_pb2.SamplingParams(**s)) for s in SAMPLING_REFUSED]
        hostile += [
            generate_request(request_id="x" * 10_000),
            generate_request(request_id="bad id"),
            generate_request(conversation_id="c" * 129),
            generate_request(conversation_id="a:b\n"),
            generate_request(stop=common_pb2.StopConditions(max_tokens=-1)),
            generate_request(stop=common_pb2.StopConditions(max_tokens=1 << 30)),
            generate_request(stop=common_pb2.StopConditions(max_tokens=4, stop_token_ids=[-1])),
            scheduler_pb2.GenerateRequest(token_ids=scheduler_pb2.TokenIds(ids=[1 << 30]),
                                          stop=common_pb2.StopConditions(max_tokens=4)),
            scheduler_pb2.GenerateRequest(stop=common_pb2.StopConditions(max_tokens=4)),
        ]
        for request in hostile:
            code = await status_of(stub.Generate(request, metadata=auth("tok-a")))
            assert code is grpc.StatusCode.INVALID_ARGUMENT, request
        # Bytes that are no GenerateRequest at all.
        async with grpc.aio.insecure_channel(stack.address) as channel:
            raw = channel.unary_stream(
                "/fastswitch.v1.Scheduler/Generate", request_serializer=lambda b: b,
                response_deserializer=scheduler_pb2.GenerateResponse.FromString)
            code = await status_of(raw(GARBAGE, metadata=auth("tok-a")))
        assert code is grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as cancel:
            await stub.Cancel(scheduler_pb2.CancelRequest(request_id="y" * 1_000_000),
                              metadata=auth("tok-a"))
        assert cancel.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert len(cancel.value.details()) < 200  # never echoed back
        assert len(await tokens_of(stub, generate_request())) == 6


@pytest.mark.parametrize("tenant, weight, code", [
    ("alice", math.nan, grpc.StatusCode.INVALID_ARGUMENT),
    ("alice", math.inf, grpc.StatusCode.INVALID_ARGUMENT),
    ("alice", 1e-310, grpc.StatusCode.INVALID_ARGUMENT),
    ("alice", 0.0, grpc.StatusCode.INVALID_ARGUMENT),
    ("mallory", 1.0, grpc.StatusCode.NOT_FOUND),
    ("m" * 1_000_000, 1.0, grpc.StatusCode.INVALID_ARGUMENT),
    ("alice:x", 1.0, grpc.StatusCode.INVALID_ARGUMENT),
])
async def test_admin_input_is_validated(stack_factory, tenant, weight, code):
    async with stack_factory() as stack:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.stub.SetTenantWeight(scheduler_pb2.SetTenantWeightRequest(
                tenant=tenant, weight=weight), metadata=auth("tok-admin"))
        assert refused.value.code() is code and len(refused.value.details()) < 300
        tenants = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(),
                                               metadata=auth("tok-admin"))
        assert {t.name: t.weight for t in tenants.tenants} == {"alice": 1.0, "bob": 1.0, "ops": 1.0}
        assert len(await tokens_of(stack.stub, generate_request())) == 6
        await stack.until_scheduler_idle()
        alice = next(t for t in (await stack.stub.ListTenants(
            scheduler_pb2.ListTenantsRequest(), metadata=auth("tok-a"))).tenants)
        assert math.isfinite(alice.virtual_tokens) and alice.virtual_tokens > 0


async def test_tenants_see_only_themselves(stack_factory):
    async with stack_factory() as stack:
        await tokens_of(stack.stub, generate_request(), token="tok-b")
        mine = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(), metadata=auth("tok-a"))
        assert [t.name for t in mine.tenants] == ["alice"]
        stats = await stack.stub.GetClusterStats(scheduler_pb2.GetClusterStatsRequest(),
                                                 metadata=auth("tok-a"))
        assert not stats.workers and stats.num_running_requests == stats.num_queued_requests == 0
        admin = await stack.stub.GetClusterStats(scheduler_pb2.GetClusterStatsRequest(),
                                                 metadata=auth("tok-admin"))
        assert [w.worker_id for w in admin.workers] == ["worker-0"]


async def test_overload_answers_resource_exhausted_per_tenant_and_cluster_wide(stack_factory):
    async with stack_factory(max_queued_per_tenant=2, max_queued_requests=3) as stack:
        long = dict(max_tokens=400)
        held = [stack.stub.Generate(generate_request(**long), metadata=auth("tok-a")) for _ in range(2)]
        for call in held:
            await call.read()  # both are live in the scheduler
        code = await status_of(stack.stub.Generate(generate_request(), metadata=auth("tok-a")))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED
        held.append(stack.stub.Generate(generate_request(**long), metadata=auth("tok-b")))
        await held[-1].read()
        code = await status_of(stack.stub.Generate(generate_request(), metadata=auth("tok-b")))
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED  # bob is under his cap, the cluster is not
        for call in held:
            call.cancel()
        for _ in range(200):
            if not stack.scheduler.core.requests:
                break
            await asyncio.sleep(0.02)
        assert len(await tokens_of(stack.stub, generate_request())) == 6


async def test_losing_every_worker_ends_every_stream_and_new_requests_get_unavailable(stack_factory):
    async with stack_factory(unroutable_timeout_s=1.0) as stack:
        call = stack.stub.Generate(generate_request(max_tokens=400), metadata=auth("tok-a"))
        await call.read()
        for worker in stack.workers:
            await worker.server.stop(0)  # the port closes: the session breaks at once
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            while await asyncio.wait_for(call.read(), 10) is not grpc.aio.EOF:
                pass
        assert lost.value.code() is grpc.StatusCode.UNAVAILABLE
        started = asyncio.get_running_loop().time()
        code = await status_of(stack.stub.Generate(generate_request(), metadata=auth("tok-a"), timeout=30))
        assert code is grpc.StatusCode.UNAVAILABLE
        assert asyncio.get_running_loop().time() - started < 10


async def test_worker_port_refuses_sessions_without_the_cluster_credential(stack_factory):
    """An intruder on a worker's port can neither take the session nor read stats; the
    scheduler's session stays and serves."""
    async with stack_factory() as stack:
        worker_address = stack.workers[0].address
        async with grpc.aio.insecure_channel(worker_address) as intruder:
            stub = worker_pb2_grpc.WorkerStub(intruder)
            session = stub.Session(iter([worker_pb2.SessionRequest()]))
            assert await status_of(session) is grpc.StatusCode.UNAUTHENTICATED
            stats = stub.GetWorkerStats(worker_pb2.GetWorkerStatsRequest())
            assert await status_of(stats) is grpc.StatusCode.UNAUTHENTICATED
        wrong = transport.TransportSecurity(cluster_token="not-the-cluster-token")
        async with transport.channel(worker_address, wrong) as intruder:
            stats = worker_pb2_grpc.WorkerStub(intruder).GetWorkerStats(worker_pb2.GetWorkerStatsRequest())
            assert await status_of(stats) is grpc.StatusCode.UNAUTHENTICATED
        assert len(await tokens_of(stack.stub, generate_request())) == 6


async def test_a_newer_scheduler_takes_the_workers_and_the_older_one_cannot_wedge_them(stack_factory):
    """A rolling update: a second scheduler (later epoch) takes every worker's session; the old
    one is refused while the new one lives, never takes the workers back from it, and picks
    them up again once it is gone."""
    async with stack_factory(num_workers=2) as stack:
        old = stack.scheduler
        new = SchedulerServer(dataclasses.replace(old.config, listen="127.0.0.1:0"))
        await asyncio.wait_for(new.start(), STEP_S)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while len(new.core.ready_links()) < 2 or not all(
                    link.is_superseded for link in old.core.links.values()):
                assert loop.time() < deadline, "the newer scheduler did not take over"
                await asyncio.sleep(0.05)
            assert not old.core.ready_links()
            frontend = FrontendServer(dataclasses.replace(
                stack.frontend.config, listen="127.0.0.1:0", scheduler_addr=new.address))
            await frontend.start()
            try:
                while not frontend.is_serving:
                    assert loop.time() < deadline, "no frontend serves the newer scheduler"
                    await asyncio.sleep(0.05)
                async with grpc.aio.insecure_channel(frontend.address) as channel:
                    stub = scheduler_pb2_grpc.SchedulerStub(channel)
                    assert len(await asyncio.wait_for(tokens_of(stub, generate_request()), STEP_S)) == 6
            finally:
                await frontend.stop(0)
            await asyncio.sleep(2 * RECONNECT_DELAY_S)  # the old one retries: still refused
            assert not old.core.ready_links() and len(new.core.ready_links()) == 2
        finally:
            await asyncio.wait_for(new.stop(0), STEP_S)
        deadline = loop.time() + SUPERSEDED_RETRY_S + 10
        while len(old.core.ready_links()) < 2:
            assert loop.time() < deadline, "the old scheduler did not pick the workers up again"
            await asyncio.sleep(0.05)
        assert len(await asyncio.wait_for(tokens_of(stack.stub, generate_request()), STEP_S)) == 6
