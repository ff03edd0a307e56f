"""The one generation pipeline behind both client APIs (the gRPC servicer and the
OpenAI-compatible HTTP API): a GenerateRequest and an authenticated tenant in, the request's
responses out. Validation, tokenization, the default max_tokens, submitting to the core and
cancelling a request whose client left all happen here, once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc

from fastswitch.tenants import TenantState
from fastswitch.tokenizer import IncrementalDetokenizer
from fastswitch.v1 import common_pb2, scheduler_pb2
from fastswitch_frontend.core import FrontendCore
from fastswitch_frontend.requests import Failure, FrontendRequest
from fastswitch_frontend.validation import InvalidRequest, prompt_token_ids


class GenerationError(Exception):
    """A request refused or failed, with the gRPC status that says why (the HTTP API maps it
    onto an HTTP status)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def submit(core: FrontendCore, tenant: TenantState,
           request: scheduler_pb2.GenerateRequest) -> FrontendRequest:
    """Validate and tokenize `request`, then hand it to the core (mutates the core: the request
    is queued). Raises GenerationError (UNAVAILABLE before a worker is ready, INVALID_ARGUMENT
    for a request the model cannot take)."""
    if not core.is_ready:
        raise GenerationError(grpc.StatusCode.UNAVAILABLE, "no worker is ready yet")
    try:
        token_ids = prompt_token_ids(request, core.tokenizer, vocab_size=core.vocab_size,
                                     max_model_len=core.max_model_len)
    except InvalidRequest as exc:
        raise GenerationError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
    stop = common_pb2.StopConditions()
    stop.CopyFrom(request.stop)
    if not stop.max_tokens:  # unset: up to the context, as vLLM does
        stop.max_tokens = core.max_model_len - len(token_ids)
    owned = FrontendRequest(
        request_id="", client_request_id=request.request_id or uuid.uuid4().hex,
        tenant=tenant, prompt_token_ids=token_ids, sampling=request.sampling, stop=stop,
        detokenizer=IncrementalDetokenizer(core.tokenizer, prompt_token_ids=token_ids),
        conversation_id=request.conversation_id,
        priority=request.priority if request.HasField("priority") else 0)
    core.submit(owned)
    return owned


async def responses(core: FrontendCore,
                    owned: FrontendRequest) -> AsyncIterator[scheduler_pb2.GenerateResponse]:
    """The request's responses until the final one (finish_reason set). Raises GenerationError
    when the system ends it with a status. Leaving early (the client went away, a stop string
    matched) cancels the request on its worker and at the scheduler: close this generator
    (`contextlib.aclosing`) so that happens at once, and start iterating right after `submit`
    (a generator closed before its first step runs no cleanup)."""
    try:
        while True:
            item = await owned.responses.get()
            if isinstance(item, Failure):
                raise GenerationError(item.code, item.message)
            yield item
            if item.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
                return
    finally:
        if not owned.is_done:
            core.cancel(owned)
