"""Response bodies of /v1/chat/completions and /v1/completions: the whole answer as one JSON
object, or server-sent events (`data: {chunk}\\n\\n` ..., then `data: [DONE]\\n\\n`)."""

from __future__ import annotations

import json
import time
from typing import Any

from fastswitch.v1 import common_pb2
from fastswitch_frontend.openai_api.errors import ApiError
from fastswitch_frontend.requests import FrontendRequest

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
FINISH_REASONS = {common_pb2.FINISH_REASON_STOP: "stop", common_pb2.FINISH_REASON_LENGTH: "length",
                  common_pb2.FINISH_REASON_ABORTED: "abort"}


def finish_reason(value: int) -> str:
    return FINISH_REASONS.get(value, "stop")


def usage(owned: FrontendRequest) -> dict[str, Any]:
    """Token counts so far (all of them once the request ended). `cached_tokens`: prompt
    tokens whose KV was reused from the conversation's previous turn."""
    num_prompt_tokens = len(owned.prompt_token_ids)
    num_generated_tokens = len(owned.generated_token_ids)
    return {"prompt_tokens": num_prompt_tokens, "completion_tokens": num_generated_tokens,
            "total_tokens": num_prompt_tokens + num_generated_tokens,
            "prompt_tokens_details": {"cached_tokens": owned.num_reused_prompt_tokens}}


def event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def error_event(error: ApiError) -> bytes:
    """A failure after the stream began (its HTTP status was already sent): the OpenAI client
    raises it as an APIError."""
    return event(error.body())


class Responses:
    """Builds one request's bodies and chunks (chat or completion shape)."""

    def __init__(self, *, response_id: str, model: str, is_chat: bool) -> None:
        self.is_chat = is_chat
        self._head = {"id": response_id,
                      "object": "chat.completion.chunk" if is_chat else "text_completion",
                      "created": int(time.time()), "model": model}

    def _choice(self, text: str | None, finish: str | None, *, is_first: bool = False) -> dict:
        if not self.is_chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        delta: dict[str, str] = {"role": "assistant"} if is_first else {}
        if text is not None:
            delta["content"] = text
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def first_chunk(self) -> bytes | None:
        """Chat streams open with the assistant's role (and no text yet)."""
        if not self.is_chat:
            return None
        return event({**self._head, "choices": [self._choice("", None, is_first=True)]})

    def chunk(self, text: str, finish: str | None = None) -> bytes:
        content = text if text or not self.is_chat or finish is None else None
        return event({**self._head, "choices": [self._choice(content, finish)]})

    def usage_chunk(self, counts: dict[str, Any]) -> bytes:
        return event({**self._head, "choices": [], "usage": counts})

    def whole(self, text: str, finish: str, counts: dict[str, Any]) -> dict[str, Any]:
        """The non-streaming response."""
        if self.is_chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text},
                      "logprobs": None, "finish_reason": finish}
            kind = "chat.completion"
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            kind = "text_completion"
        return {**self._head, "object": kind, "choices": [choice], "usage": counts}
