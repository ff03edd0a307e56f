"""Scheduler -> worker -> client through real gRPC servers on 127.0.0.1 and a real Redis."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from fastswitch.v1 import common_pb2, scheduler_pb2
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import SamplingParams, StopConditions


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


PROMPT = [11, 250, 3, 77, 8, 19, 140, 5, 61, 200, 33, 4, 90]


def generate_request(prompt=PROMPT, max_tokens=12, **kwargs) -> scheduler_pb2.GenerateRequest:
    return scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=prompt),
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True), **kwargs)


async def collect(stub, request, token="tok-a") -> tuple[list[int], list[scheduler_pb2.GenerateResponse]]:
    responses = [r async for r in stub.Generate(request, metadata=auth(token))]
    return [t for r in responses for t in r.token_ids], responses


def engine_tokens(engine_settings: dict, prompt, max_tokens) -> list[int]:
    engine = Engine(EngineConfig(**engine_settings))
    engine.add_request("r", prompt, sampling=SamplingParams(),
                       stop=StopConditions(max_tokens=max_tokens, ignore_eos=True))
    tokens = []
    while engine.has_unfinished_requests():
        for output in engine.step().outputs:
            tokens.extend(output.new_token_ids)
    engine.close()
    return tokens


async def test_streamed_generation_equals_the_engine_in_process(stack_factory, engine_settings) -> None:
    async with stack_factory() as stack:
        tokens, responses = await collect(stack.stub, generate_request(request_id="x1"))
    assert tokens == engine_tokens(engine_settings, PROMPT, 12)
    assert len(responses) >= 2  # streamed, not one blob
    final = responses[-1]
    assert final.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert final.usage.num_generated_tokens == 12 and final.usage.num_prompt_tokens == len(PROMPT)
    assert final.timing.ttft_ms > 0 and final.timing.e2e_ms >= final.timing.ttft_ms
    assert all(r.request_id == "x1" for r in responses)


async def test_text_prompt_streams_text(stack_factory) -> None:
    async with stack_factory() as stack:
        request = scheduler_pb2.GenerateRequest(
            text="héllo wörld", stop=common_pb2.StopConditions(max_tokens=8, ignore_eos=True))
        _, responses = await collect(stack.stub, request)
    assert "".join(r.text for r in responses).encode("utf-8")  # valid UTF-8 throughout


@pytest.mark.parametrize("request_kwargs, message", [
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[])), "empty"),
    (dict(text=""), "empty"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[1, 2]), stop=common_pb2.StopConditions(max_tokens=-1)), "max_tokens"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[1, 2]), stop=common_pb2.StopConditions(max_tokens=10**6)), "context"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[10**6]), stop=common_pb2.StopConditions(max_tokens=4)), "token ids"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[1]), stop=common_pb2.StopConditions(max_tokens=4),
          sampling=common_pb2.SamplingParams(temperature=-1)), "temperature"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[1]), stop=common_pb2.StopConditions(max_tokens=4),
          sampling=common_pb2.SamplingParams(top_p=1.5)), "top_p"),
    (dict(token_ids=scheduler_pb2.TokenIds(ids=[1]), stop=common_pb2.StopConditions(max_tokens=4),
          conversation_id="bad id with spaces"), "conversation_id"),
])
async def test_bad_requests_get_invalid_argument_and_the_server_keeps_serving(
        stack_factory, request_kwargs, message) -> None:
    async with stack_factory() as stack:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await collect(stack.stub, scheduler_pb2.GenerateRequest(**request_kwargs))
        assert exc.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in exc.value.details()
        tokens, _ = await collect(stack.stub, generate_request(max_tokens=3))
        assert len(tokens) == 3


async def test_identity_comes_from_the_bearer_token(stack_factory) -> None:
    async with stack_factory() as stack:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await collect(stack.stub, generate_request(), token="forged")
        assert exc.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.stub.SetTenantWeight(scheduler_pb2.SetTenantWeightRequest(
                tenant="alice", weight=5), metadata=auth("tok-a"))
        assert exc.value.code() is grpc.StatusCode.PERMISSION_DENIED
        response = await stack.stub.SetTenantWeight(scheduler_pb2.SetTenantWeightRequest(
            tenant="alice", weight=5), metadata=auth("tok-admin"))
        assert response.tenant.weight == 5
        await collect(stack.stub, generate_request(max_tokens=4), token="tok-b")
        await stack.until_scheduler_idle()
        tenants = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(), metadata=auth("tok-admin"))
        served = {t.name: t.num_served_generated_tokens for t in tenants.tenants}
        assert served["bob"] == 4 and served["alice"] == 0


async def test_cancel_and_client_disconnect_free_the_kv(stack_factory) -> None:
    async with stack_factory() as stack:
        call = stack.stub.Generate(generate_request(request_id="long", max_tokens=200), metadata=auth("tok-a"))
        await call.read()
        await stack.stub.Cancel(scheduler_pb2.CancelRequest(request_id="long"), metadata=auth("tok-a"))
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            while True:
                if await call.read() is grpc.aio.EOF:
                    break
        assert exc.value.code() is grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stack.stub.Cancel(scheduler_pb2.CancelRequest(request_id="nope"), metadata=auth("tok-a"))
        assert exc.value.code() is grpc.StatusCode.NOT_FOUND

        call = stack.stub.Generate(generate_request(request_id="gone", max_tokens=200), metadata=auth("tok-a"))
        await call.read()
        call.cancel()  # the client disconnects
        worker_stats = stack.workers[0].service
        for _ in range(200):
            await asyncio.sleep(0.02)
            if not stack.scheduler.core.requests and worker_stats.num_live_requests() == 0:
                break
        engine = stack.workers[0].service.engine_loop.engine
        assert not stack.scheduler.core.requests
        assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks


async def test_a_request_with_only_a_prompt_generates_up_to_the_context(stack_factory) -> None:
    """proto3 cannot tell an unset max_tokens from 0: 0 means "up to the context", as in vLLM.
    (The tiny demo model never emits EOS, so it runs to the end of a short context.)"""
    async with stack_factory(engine={"max_model_len": 48}) as stack:
        request = scheduler_pb2.GenerateRequest(token_ids=scheduler_pb2.TokenIds(ids=PROMPT))
        tokens, responses = await collect(stack.stub, request)
        assert stack.frontend.core.max_model_len == 48
    final = responses[-1]
    assert final.finish_reason == common_pb2.FINISH_REASON_LENGTH
    assert final.usage.num_generated_tokens == len(tokens) == 48 - len(PROMPT)
