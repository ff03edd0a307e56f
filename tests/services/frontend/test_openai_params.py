"""OpenAI request bodies -> GenerateRequest (pure), stop-string matching over streamed deltas,
and the one gRPC -> HTTP status table."""

from __future__ import annotations

import grpc
import pytest

from fastswitch_frontend.openai_api.errors import HTTP_BY_GRPC, ApiError
from fastswitch_frontend.openai_api.params import (
    check_model,
    parse_json,
    parse_request,
    set_completion_prompt,
)
from fastswitch_frontend.openai_api.stop_strings import StopStringMatcher


def test_chat_parameters_map_onto_the_grpc_request() -> None:
    parsed = parse_request({"max_completion_tokens": 7, "max_tokens": 99, "temperature": 0.5,
                            "top_p": 0.9, "seed": 2**64 - 1, "stop": "\n\n", "stream": True,
                            "stream_options": {"include_usage": True}, "ignore_eos": True,
                            "top_k": -1, "stop_token_ids": [3, 4], "priority": 2,
                            "user": "whoever", "n": 1}, is_chat=True)
    generate = parsed.generate
    assert generate.stop.max_tokens == 7  # max_completion_tokens wins, as in OpenAI's API
    assert (generate.sampling.temperature, round(generate.sampling.top_p, 6)) == (0.5, 0.9)
    assert generate.sampling.seed == 2**64 - 1 and generate.sampling.top_k == 0
    assert generate.stop.ignore_eos and list(generate.stop.stop_token_ids) == [3, 4]
    assert generate.priority == 2 and generate.request_id.startswith("chatcmpl-")
    assert parsed.is_stream and parsed.include_usage and parsed.stop_strings == ("\n\n",)


def test_defaults_follow_openai() -> None:
    chat = parse_request({}, is_chat=True).generate
    completion = parse_request({}, is_chat=False).generate
    assert chat.stop.max_tokens == 0  # up to the context
    assert completion.stop.max_tokens == 16  # OpenAI's documented completions default
    assert chat.sampling.temperature == 1.0 and not chat.sampling.HasField("seed")
    assert not chat.HasField("priority")


@pytest.mark.parametrize("body, param", [
    ({"n": 2}, "n"), ({"max_tokens": -1}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"), ({"max_tokens": True}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"), ({"top_p": 0}, "top_p"), ({"top_p": 1.5}, "top_p"),
    ({"seed": -1}, "seed"), ({"stop": ["a", ""]}, "stop"), ({"stop": ["x"] * 17}, "stop"),
    ({"stop": 5}, "stop"), ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"logprobs": True}, "logprobs"), ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"best_of": 2}, "best_of"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
])
def test_bad_parameters_are_refused_naming_the_parameter(body, param) -> None:
    with pytest.raises(ApiError) as caught:
        parse_request(body, is_chat=True)
    assert (caught.value.status, caught.value.type, caught.value.param) == (
        400, "invalid_request_error", param)


def test_default_values_of_unsupported_parameters_are_accepted() -> None:
    parse_request({"n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0.0,
                   "logit_bias": {}, "tools": [], "response_format": {"type": "text"}},
                  is_chat=True)


def test_completion_prompts() -> None:
    for prompt, kind in (("hi", "text"), ([5, 6], "token_ids"), (["hi"], "text"), ([[5]], "token_ids")):
        generate = parse_request({}, is_chat=False).generate
        set_completion_prompt({"prompt": prompt}, generate)
        assert generate.WhichOneof("prompt") == kind
    for prompt in (None, [], ["a", "b"], [1, "a"], 3, [-1]):
        with pytest.raises(ApiError) as caught:
            set_completion_prompt({"prompt": prompt}, parse_request({}, is_chat=False).generate)
        assert caught.value.param == "prompt"


def test_bodies_and_models() -> None:
    for raw in (b"{", b"[1]", b"\xff"):
        with pytest.raises(ApiError) as caught:
            parse_json(raw)
        assert caught.value.status == 400
    check_model({}, "tiny")  # omitted: the served one
    with pytest.raises(ApiError) as caught:
        check_model({"model": "gpt-4"}, "tiny")
    assert (caught.value.status, caught.value.code, caught.value.param) == (404, "model_not_found", "model")


def feed_all(matcher: StopStringMatcher, deltas: list[str]) -> str:
    emitted = []
    for delta in deltas:
        emitted.append(matcher.feed(delta))
        if matcher.is_stopped:
            break
    else:
        emitted.append(matcher.flush())
    return "".join(emitted)


@pytest.mark.parametrize("deltas, stops, expected, is_stopped", [
    (["Hello", " wor", "ld!"], ["world"], "Hello ", True),  # spans deltas
    (["ab", "cEN", "Dxyz"], ["END"], "abc", True),
    (["a", "E", "N", "x"], ["END"], "aENx", False),  # a prefix that did not complete is sent
    (["xxEN"], ["END"], "xxEN", False),  # held to the end, then flushed
    (["one two three"], ["three", "two"], "one ", True),  # the earliest occurrence wins
    (["abc"], [], "abc", False),
])
def test_stop_strings_end_the_text_before_them(deltas, stops, expected, is_stopped) -> None:
    matcher = StopStringMatcher(stops)
    assert feed_all(matcher, deltas) == expected
    assert matcher.is_stopped is is_stopped


def test_a_held_back_prefix_is_not_sent_until_it_is_known() -> None:
    matcher = StopStringMatcher(["</s>"])
    assert matcher.feed("hi </") == "hi "
    assert matcher.feed("b>") == "</b>"


def test_status_table_covers_what_the_core_produces() -> None:
    expected = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.UNAUTHENTICATED: 401,
                grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
                grpc.StatusCode.UNAVAILABLE: 503}
    assert {code: HTTP_BY_GRPC[code].status for code in expected} == expected
    assert ApiError.from_grpc(grpc.StatusCode.INTERNAL, "boom").status == 500
    body = ApiError.from_grpc(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy").body()
    assert body == {"error": {"message": "busy", "type": "rate_limit_error", "param": None,
                              "code": "resource_exhausted"}}
