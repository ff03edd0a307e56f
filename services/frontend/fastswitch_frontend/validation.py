"""Checks a GenerateRequest before anything is queued (pure). Raises InvalidRequest."""

from __future__ import annotations

import math
import re

from fastswitch.tokenizer import Tokenizer
from fastswitch.v1 import scheduler_pb2

CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")  # fullmatch: `$` admits "\n"
REQUEST_ID = re.compile(r"[A-Za-z0-9_.:\-]{0,128}")
MAX_STOP_TOKEN_IDS = 64
# Beyond this, sampling is uniform noise for every model; finite values below it cannot
# overflow the worker's sampler (it treats tiny temperatures as greedy).
MAX_TEMPERATURE = 100.0


class InvalidRequest(ValueError):
    """Maps to INVALID_ARGUMENT with this message."""


def prompt_token_ids(request: scheduler_pb2.GenerateRequest, tokenizer: Tokenizer,
                     *, vocab_size: int, max_model_len: int) -> list[int]:
    """Validate the request against the model and return its prompt as token ids."""
    if not REQUEST_ID.fullmatch(request.request_id):
        raise InvalidRequest("request_id may hold only letters, digits and _.:- (max 128)")
    kind = request.WhichOneof("prompt")
    if kind == "text":
        if not request.text:
            raise InvalidRequest("prompt text is empty")
        token_ids = tokenizer.encode(request.text)
    elif kind == "token_ids":
        token_ids = list(request.token_ids.ids)
        if any(not 0 <= t < vocab_size for t in token_ids):
            raise InvalidRequest(f"prompt token ids must be in [0, {vocab_size})")
    else:
        raise InvalidRequest("a prompt (text or token_ids) is required")
    if not token_ids:
        raise InvalidRequest("prompt is empty")
    stop, sampling = request.stop, request.sampling
    if stop.max_tokens < 0:
        raise InvalidRequest(f"stop.max_tokens must be >= 0 (0 = up to the context), got {stop.max_tokens}")
    if len(token_ids) >= max_model_len:
        raise InvalidRequest(f"prompt ({len(token_ids)} tokens) leaves no room in the model's "
                             f"context of {max_model_len} tokens")
    if len(token_ids) + stop.max_tokens > max_model_len:
        raise InvalidRequest(
            f"prompt ({len(token_ids)} tokens) + max_tokens ({stop.max_tokens}) exceeds the "
            f"model's context of {max_model_len} tokens")
    if len(stop.stop_token_ids) > MAX_STOP_TOKEN_IDS or any(
            not 0 <= t < vocab_size for t in stop.stop_token_ids):
        raise InvalidRequest(f"at most {MAX_STOP_TOKEN_IDS} stop_token_ids, each in [0, {vocab_size})")
    if not (math.isfinite(sampling.temperature) and 0 <= sampling.temperature <= MAX_TEMPERATURE):
        raise InvalidRequest(f"temperature must be in [0, {MAX_TEMPERATURE:g}] (0 = greedy), "
                             f"got {sampling.temperature}")
    if sampling.top_k < 0:
        raise InvalidRequest(f"top_k must be >= 0, got {sampling.top_k}")
    if not 0 <= sampling.top_p <= 1:
        raise InvalidRequest(f"top_p must be in [0, 1] (0 = off), got {sampling.top_p}")
    if request.conversation_id and not CONVERSATION_ID.fullmatch(request.conversation_id):
        raise InvalidRequest("conversation_id must be 1-128 characters of letters, digits and _.:-")
    return token_ids
