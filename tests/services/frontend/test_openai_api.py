"""The OpenAI-compatible HTTP API through the official `openai` client (and raw HTTP for what a
client library would not send), against the real local stack on 127.0.0.1 with the tiny model."""

from __future__ import annotations

import asyncio

import aiohttp
import openai
import pytest

from fastswitch.v1 import common_pb2, scheduler_pb2
from fastswitch_frontend.config import FrontendConfig
from fastswitch_frontend.openai_api.chat_template import ChatTemplateError
from fastswitch_frontend.server import FrontendServer
from fastswitch_stack.process_stack import free_port

PROMPT = "Hello, FastSwitch"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]


def client(stack, key: str = "tok-a") -> openai.AsyncOpenAI:
    # No retries: a 429 or 503 must reach the test as it was answered.
    return openai.AsyncOpenAI(base_url=stack.http_url, api_key=key, max_retries=0)


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def stream_text(stream) -> tuple[str, list, object]:
    """(text, finish reasons of the chunks that had one, the usage chunk's usage)."""
    text, finishes, usage = "", [], None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            piece = choice.delta.content if hasattr(choice, "delta") else choice.text
            text += piece or ""
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
    return text, finishes, usage


async def test_chat_answers_whole_and_streamed_alike_with_usage(stack_factory) -> None:
    async with stack_factory() as stack:
        api = client(stack)
        whole = await api.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=12,
                                                  temperature=0, extra_body={"ignore_eos": True})
        stream = await api.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        text, finishes, usage = await stream_text(stream)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.finish_reason == "length"
    assert len(choice.message.content) > 0 and text == choice.message.content
    assert finishes == ["length"]
    assert whole.usage.completion_tokens == 12 == usage.completion_tokens
    assert whole.usage.prompt_tokens == usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + 12


async def test_greedy_completion_equals_grpc_generate_for_the_same_prompt(stack_factory) -> None:
    async with stack_factory() as stack:
        api = client(stack)
        whole = await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=16,
                                             temperature=0, extra_body={"ignore_eos": True})
        text, finishes, usage = await stream_text(await api.completions.create(
            model="tiny", prompt=PROMPT, max_tokens=16, temperature=0, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        request = scheduler_pb2.GenerateRequest(
            text=PROMPT, stop=common_pb2.StopConditions(max_tokens=16, ignore_eos=True))
        responses = [r async for r in stack.stub.Generate(request, metadata=auth("tok-a"))]
    grpc_text = "".join(r.text for r in responses)
    assert whole.choices[0].text == grpc_text == text
    assert whole.object == "text_completion" and whole.choices[0].finish_reason == "length"
    assert finishes == ["length"]
    assert whole.usage.prompt_tokens == responses[-1].usage.num_prompt_tokens == usage.prompt_tokens
    assert whole.usage.completion_tokens == 16


async def test_a_stop_string_ends_the_answer_before_it_and_stops_generating(stack_factory) -> None:
    async with stack_factory() as stack:
        api = client(stack)
        full = (await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=24,
                                             temperature=0, extra_body={"ignore_eos": True})
                ).choices[0].text
        stop = full[6:8]
        expected = full[:full.index(stop)]
        whole = await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=24,
                                             temperature=0, stop=[stop, "never-seen"],
                                             extra_body={"ignore_eos": True})
        chat = dict(model="tiny", messages=[{"role": "user", "content": "x"}], max_tokens=24,
                    temperature=0, extra_body={"ignore_eos": True})
        chat_full = (await api.chat.completions.create(**chat)).choices[0].message.content
        chat_stop = chat_full[4:6]
        text, finishes, usage = await stream_text(await api.chat.completions.create(
            **chat, stop=chat_stop, stream=True, stream_options={"include_usage": True}))
        await stack.until_scheduler_idle()  # the stopped requests were cancelled everywhere
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason == "stop"
    assert whole.usage.completion_tokens < 24  # generation stopped, not just the text
    assert text == chat_full[:chat_full.index(chat_stop)] and finishes == ["stop"]
    assert usage.completion_tokens < 24


async def test_a_seed_makes_sampling_repeatable(stack_factory) -> None:
    async with stack_factory() as stack:
        api = client(stack)

        async def sample(seed: int) -> str:
            answer = await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=16,
                                                  temperature=1.0, seed=seed,
                                                  extra_body={"ignore_eos": True})
            return answer.choices[0].text

        first, again = await sample(7), await sample(7)
        others = {await sample(seed) for seed in (8, 9, 10)}
    assert first == again
    assert len(others | {first}) > 1  # the seed, not greedy decoding, made them equal


async def test_bad_requests_get_the_right_status_and_an_openai_error(stack_factory) -> None:
    async with stack_factory() as stack:
        api = client(stack)
        with pytest.raises(openai.BadRequestError) as caught:
            await api.chat.completions.create(model="tiny", messages=MESSAGES, n=2)
        assert caught.value.body["param"] == "n" and "n=1" in caught.value.body["message"]
        with pytest.raises(openai.BadRequestError) as caught:
            await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=-3)
        assert caught.value.body["param"] == "max_tokens"
        with pytest.raises(openai.BadRequestError) as caught:
            await api.completions.create(model="tiny", prompt=PROMPT, temperature=-1)
        assert "temperature" in caught.value.body["message"]  # the gRPC API's own check
        with pytest.raises(openai.BadRequestError) as caught:
            await api.completions.create(model="tiny", prompt="x" * 5000, max_tokens=4)
        assert "context" in caught.value.body["message"]
        with pytest.raises(openai.NotFoundError) as caught:
            await api.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert caught.value.body["code"] == "model_not_found"
        headers = {"Authorization": "Bearer tok-a", "Content-Type": "application/json"}
        async with aiohttp.ClientSession(headers=headers) as http:
            raw = {}
            for name, method, path, data in (
                    ("malformed", "POST", "/chat/completions", b'{"messages": ['),
                    ("not an object", "POST", "/completions", b'"prompt"'),
                    ("unknown route", "POST", "/embeddings", b"{}"),
                    ("wrong method", "GET", "/chat/completions", None)):
                async with http.request(method, stack.http_url + path, data=data) as response:
                    raw[name] = (response.status, await response.json())
    assert {name: status for name, (status, _) in raw.items()} == {
        "malformed": 400, "not an object": 400, "unknown route": 404, "wrong method": 405}
    for _, body in raw.values():
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert raw["malformed"][1]["error"]["type"] == "invalid_request_error"
    assert "JSON" in raw["malformed"][1]["error"]["message"]


async def test_bearer_keys_pick_the_tenant_and_the_user_field_never_does(stack_factory) -> None:
    async with stack_factory() as stack:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client(stack, "not-a-token").completions.create(model="tiny", prompt=PROMPT)
        assert caught.value.body["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            await client(stack, "not-a-token").models.list()
        async with aiohttp.ClientSession() as http:  # no key at all (the client insists on one)
            async with http.post(stack.http_url + "/completions", json={"prompt": "x"}) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "invalid_api_key"
        await client(stack, "tok-b").completions.create(
            model="tiny", prompt=PROMPT, max_tokens=5, user="alice", extra_body={"ignore_eos": True})
        await stack.until_scheduler_idle()
        listed = await stack.stub.ListTenants(scheduler_pb2.ListTenantsRequest(),
                                              metadata=auth("tok-admin"))
    served = {t.name: t.num_served_generated_tokens for t in listed.tenants}
    assert served["bob"] == 5 and served["alice"] == 0


async def test_overload_answers_429_and_a_client_that_leaves_cancels_its_request(stack_factory) -> None:
    async with stack_factory(max_queued_per_tenant=1) as stack:
        api = client(stack)
        # 1500 tokens take seconds: a request still computing would outlive the waits below.
        stream = await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=1500,
                                              stream=True, extra_body={"ignore_eos": True})
        chunks = stream.__aiter__()
        await chunks.__anext__()  # alice's one request is live
        with pytest.raises(openai.RateLimitError) as caught:
            await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=4)
        assert caught.value.body["type"] == "rate_limit_error"
        await client(stack, "tok-b").completions.create(model="tiny", prompt=PROMPT, max_tokens=2)
        await stream.close()  # the client leaves mid-stream
        await stack.until_scheduler_idle(timeout_s=1.0)  # cancelled at the scheduler, at once
        assert not stack.frontend.core.requests
        with pytest.raises(openai.APITimeoutError):  # leaves while waiting for a whole answer
            await api.completions.create(model="tiny", prompt=PROMPT, max_tokens=1500,
                                         timeout=0.5, extra_body={"ignore_eos": True})
        await stack.until_scheduler_idle(timeout_s=1.0)
        assert not stack.frontend.core.requests


async def test_models_and_health(stack_factory) -> None:
    async with stack_factory() as stack:
        models = await client(stack).models.list()
        async with aiohttp.ClientSession() as http:
            async with http.get(stack.http_url.removesuffix("/v1") + "/health") as response:
                health = response.status
    assert [m.id for m in models.data] == ["tiny"]
    assert models.data[0].max_model_len == stack.frontend.core.max_model_len
    assert health == 200


async def test_stopping_the_frontend_ends_http_streams_and_closes_the_port(stack_factory) -> None:
    async with stack_factory() as stack:
        stream = await client(stack).completions.create(
            model="tiny", prompt=PROMPT, max_tokens=1000, stream=True,
            extra_body={"ignore_eos": True})
        chunks = stream.__aiter__()
        await chunks.__anext__()
        await stack.frontend.stop(0)
        with pytest.raises(openai.APIError) as caught:  # the error event, then the end
            async with asyncio.timeout(10):
                async for _ in chunks:
                    pass
        assert "shutting down" in str(caught.value)
        with pytest.raises(openai.APIConnectionError):
            await client(stack).models.list()


async def test_without_a_worker_health_and_requests_answer_503() -> None:
    config = FrontendConfig(listen="127.0.0.1:0", scheduler_addr=f"127.0.0.1:{free_port()}",
                            frontend_name="alone", model="tiny", metrics_port=0)
    frontend = FrontendServer(config, is_http_port_ephemeral=True)  # no scheduler, no worker
    await frontend.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(frontend.http_url.removesuffix("/v1") + "/health") as response:
                health = response.status, await response.json()
        with pytest.raises(openai.InternalServerError) as caught:
            await openai.AsyncOpenAI(base_url=frontend.http_url, api_key="any", max_retries=0
                                     ).chat.completions.create(model="tiny", messages=MESSAGES)
    finally:
        await frontend.stop(0)
    assert health[0] == 503 and health[1]["error"]["type"] == "service_unavailable_error"
    assert caught.value.status_code == 503 and "no worker" in caught.value.body["message"]


async def test_a_checkpoint_whose_chat_template_does_not_compile_stops_the_frontend_at_startup(
        tmp_path) -> None:
    (tmp_path / "chat_template.jinja").write_text("{% if messages %}unclosed")
    config = FrontendConfig(listen="127.0.0.1:0", frontend_name="f", model=str(tmp_path),
                            metrics_port=0)
    with pytest.raises(ChatTemplateError, match="does not compile"):
        FrontendServer(config, is_http_port_ephemeral=True)
