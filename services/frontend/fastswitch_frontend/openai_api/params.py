"""An OpenAI request body -> the GenerateRequest the gRPC API takes, plus what only HTTP has
(streaming, usage in the stream, stop strings). Checks types and the parameters OpenAI and the
gRPC API disagree on; ranges the model decides (context length, temperature, token ids) are
checked once for both APIs by fastswitch_frontend.validation. Raises ApiError (400)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from fastswitch.v1 import common_pb2, scheduler_pb2
from fastswitch_frontend.openai_api.errors import ApiError, invalid, model_not_found

# OpenAI's documented default for /v1/completions (chat: up to the context, as vLLM does).
DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_STOP_STRINGS = 16
MAX_STOP_STRING_CHARS = 256
MAX_INT32 = 2**31 - 1
MAX_SEED = 2**64 - 1


@dataclass(frozen=True)
class OpenAIRequest:
    generate: scheduler_pb2.GenerateRequest  # the prompt is filled in by the endpoint
    is_chat: bool
    is_stream: bool
    include_usage: bool  # a usage chunk before [DONE] (stream_options.include_usage)
    stop_strings: tuple[str, ...]

    @property
    def response_id(self) -> str:
        return self.generate.request_id


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise invalid(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("the request body must be a JSON object")
    return body


def check_model(body: dict[str, Any], served_model: str) -> None:
    """The model named must be the one this cluster serves (omitted: that one, as vLLM)."""
    model = body.get("model")
    if model is None:
        return
    if not isinstance(model, str):
        raise invalid("'model' must be a string", "model")
    if model != served_model:
        raise model_not_found(model)


def parse_request(body: dict[str, Any], *, is_chat: bool) -> OpenAIRequest:
    """Everything but the prompt."""
    _refuse_unsupported(body)
    is_stream = boolean(body, "stream", False)
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not is_stream:
            raise invalid("'stream_options' needs 'stream': true", "stream_options")
        if not isinstance(stream_options, dict):
            raise invalid("'stream_options' must be an object", "stream_options")
    include_usage = boolean(stream_options or {}, "include_usage", False)
    if is_chat and body.get("max_completion_tokens") is not None:
        max_tokens = integer(body, "max_completion_tokens", 0, low=1, high=MAX_INT32)
    else:
        max_tokens = integer(body, "max_tokens", 0 if is_chat else DEFAULT_COMPLETION_MAX_TOKENS,
                             low=1, high=MAX_INT32)
    top_p = number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise invalid(f"'top_p' must be in (0, 1], got {top_p}", "top_p")
    top_k = integer(body, "top_k", 0, low=-1, high=MAX_INT32)  # vLLM's extension; -1 = off
    sampling = common_pb2.SamplingParams(temperature=number(body, "temperature", 1.0),
                                         top_p=top_p, top_k=max(top_k, 0))
    seed = integer(body, "seed", None, low=0, high=MAX_SEED)
    if seed is not None:
        sampling.seed = seed
    stop = common_pb2.StopConditions(
        max_tokens=max_tokens, ignore_eos=boolean(body, "ignore_eos", False),
        stop_token_ids=int_list(body, "stop_token_ids", low=0, high=MAX_INT32))
    generate = scheduler_pb2.GenerateRequest(
        request_id=f"{'chatcmpl' if is_chat else 'cmpl'}-{uuid.uuid4().hex}",
        sampling=sampling, stop=stop)
    priority = integer(body, "priority", None, low=-MAX_INT32, high=MAX_INT32)
    if priority is not None:
        generate.priority = priority
    return OpenAIRequest(generate, is_chat, is_stream, include_usage, stop_strings(body))


def set_completion_prompt(body: dict[str, Any], generate: scheduler_pb2.GenerateRequest) -> None:
    """/v1/completions' `prompt`: a string or a list of token ids (or a list holding exactly one
    of those). Mutates `generate`."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        generate.text = prompt
    elif isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        if not all(0 <= t <= MAX_INT32 for t in prompt):
            raise invalid("prompt token ids must be non-negative", "prompt")
        generate.token_ids.ids.extend(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise invalid("one prompt per request: send a string or a list of token ids", "prompt")
    else:
        raise invalid("'prompt' must be a non-empty string or list of token ids", "prompt")


def stop_strings(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_STRINGS
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_STRING_CHARS for s in stops)):
        raise invalid(f"'stop' must be a string or a list of at most {MAX_STOP_STRINGS} strings, "
                      f"each 1-{MAX_STOP_STRING_CHARS} characters", "stop")
    return tuple(stops)


# ---- typed fields ------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not 1


def integer(body: dict[str, Any], name: str, default: int | None, *, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value):
        raise invalid(f"'{name}' must be an integer", name)
    if not low <= value <= high:
        raise invalid(f"'{name}' must be in [{low}, {high}], got {value}", name)
    return value


def number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise invalid(f"'{name}' must be a number", name)
    return float(value)


def boolean(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"'{name}' must be true or false", name)
    return value


def int_list(body: dict[str, Any], name: str, *, low: int, high: int) -> list[int]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(_is_int(v) and low <= v <= high for v in value):
        raise invalid(f"'{name}' must be a list of integers in [{low}, {high}]", name)
    return value


# Parameters whose non-default values this server cannot honour: refused, never ignored, so a
# client never silently gets something else than it asked for. name -> accepted values
_DEFAULT_ONLY: dict[str, tuple[Any, ...]] = {
    "n": (1,), "best_of": (1,), "logprobs": (False, None), "top_logprobs": (0,),
    "presence_penalty": (0,), "frequency_penalty": (0,), "repetition_penalty": (1,),
    "logit_bias": ({},), "tools": ([],), "functions": ([],), "echo": (False,), "suffix": ("",),
    "response_format": ({"type": "text"},),
}


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for name, accepted in _DEFAULT_ONLY.items():
        value = body.get(name)
        if value is not None and not any(_same(value, a) for a in accepted):
            reason = "only n=1 is supported" if name == "n" else "is not supported"
            raise ApiError(400, f"'{name}': {reason} (got {json.dumps(value)[:100]})", param=name)


def _same(value: Any, accepted: Any) -> bool:
    return type(value) is type(accepted) and value == accepted or (
        isinstance(value, int | float) and not isinstance(value, bool)
        and isinstance(accepted, int) and not isinstance(accepted, bool) and value == accepted)
