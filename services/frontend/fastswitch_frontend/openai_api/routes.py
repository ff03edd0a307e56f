"""The HTTP handlers. Each completion request is authenticated (the same bearer tokens and
anonymous rules as the gRPC API), parsed into a GenerateRequest and run through
fastswitch_frontend.generation, the pipeline the gRPC servicer runs."""

from __future__ import annotations

import contextlib
import logging
import time

import grpc
from aiohttp import web

from fastswitch.tenants import AuthError, TenantState
from fastswitch.v1 import common_pb2
from fastswitch_frontend import generation
from fastswitch_frontend.core import FrontendCore
from fastswitch_frontend.openai_api import chat, params, sse
from fastswitch_frontend.openai_api.chat_template import ChatTemplate
from fastswitch_frontend.openai_api.errors import ApiError, unauthenticated
from fastswitch_frontend.openai_api.stop_strings import StopStringMatcher
from fastswitch_frontend.requests import FrontendRequest

log = logging.getLogger("fastswitch.frontend.http")


class OpenAIRoutes:
    def __init__(self, core: FrontendCore, *, model_name: str, template: ChatTemplate) -> None:
        self.core = core
        self.model_name = model_name
        self.template = template
        self.created_s = int(time.time())

    def add_to(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat_completions)
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)

    # ---- endpoints ------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if not self.core.is_ready:
            raise ApiError.from_grpc(grpc.StatusCode.UNAVAILABLE, "no worker is ready yet")
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        self._tenant(request)
        model = {"id": self.model_name, "object": "model", "created": self.created_s,
                 "owned_by": "fastswitch", "root": self.model_name, "parent": None}
        if self.core.max_model_len:
            model["max_model_len"] = self.core.max_model_len
        return web.json_response({"object": "list", "data": [model]})

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        tenant, body = await self._start(request)
        parsed = params.parse_request(body, is_chat=True)
        self._require_ready()  # the prompt needs the tokenizer
        token_ids, conversation_id = chat.chat_prompt(body, self.template, self.core.tokenizer,
                                                      tenant.name)
        parsed.generate.token_ids.ids.extend(token_ids)
        parsed.generate.conversation_id = conversation_id
        return await self._generate(request, tenant, parsed)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        tenant, body = await self._start(request)
        parsed = params.parse_request(body, is_chat=False)
        params.set_completion_prompt(body, parsed.generate)
        return await self._generate(request, tenant, parsed)

    # ---- the shared part ------------------------------------------------------------------
    def _tenant(self, request: web.Request) -> TenantState:
        """The caller's tenant, from `Authorization: Bearer <token>` exactly as gRPC reads its
        metadata; the body's `user` field never chooses one."""
        try:
            return self.core.tenants.identify(
                (("authorization", request.headers.get("Authorization", "")),))
        except AuthError as exc:
            raise unauthenticated(str(exc)) from exc

    async def _start(self, request: web.Request) -> tuple[TenantState, dict]:
        tenant = self._tenant(request)
        body = params.parse_json(await request.read())
        params.check_model(body, self.model_name)
        return tenant, body

    def _require_ready(self) -> None:
        if not self.core.is_ready:
            raise ApiError.from_grpc(grpc.StatusCode.UNAVAILABLE, "no worker is ready yet")

    async def _generate(self, request: web.Request, tenant: TenantState,
                        parsed: params.OpenAIRequest) -> web.StreamResponse:
        bodies = sse.Responses(response_id=parsed.response_id, model=self.model_name,
                               is_chat=parsed.is_chat)
        matcher = StopStringMatcher(parsed.stop_strings)
        try:
            owned = generation.submit(self.core, tenant, parsed.generate)
        except generation.GenerationError as exc:
            raise ApiError.from_grpc(exc.code, exc.message) from exc
        async with contextlib.aclosing(generation.responses(self.core, owned)) as stream:
            if parsed.is_stream:
                return await _stream(request, parsed, owned, stream, bodies, matcher)
            return await _whole(owned, stream, bodies, matcher)


def _step(item, matcher: StopStringMatcher) -> tuple[str, str | None]:
    """(text to send, finish reason when this is the end) for one response."""
    is_final = item.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED
    text = matcher.feed(item.text)
    if matcher.is_stopped:
        return text, "stop"
    if is_final:
        return text + matcher.flush(), sse.finish_reason(item.finish_reason)
    return text, None


async def _whole(owned: FrontendRequest, stream, bodies: sse.Responses,
                 matcher: StopStringMatcher) -> web.Response:
    pieces: list[str] = []
    finish = None
    try:
        async for item in stream:
            text, finish = _step(item, matcher)
            pieces.append(text)
            if finish is not None:
                break
    except generation.GenerationError as exc:
        raise ApiError.from_grpc(exc.code, exc.message) from exc
    return web.json_response(bodies.whole("".join(pieces), finish or "abort", sse.usage(owned)))


async def _stream(request: web.Request, parsed: params.OpenAIRequest, owned: FrontendRequest,
                  stream, bodies: sse.Responses, matcher: StopStringMatcher) -> web.StreamResponse:
    """The status line waits for the first response, so a request refused before it runs
    (overload: 429; no worker: 503) gets its own HTTP status rather than an error event."""
    responses = stream.__aiter__()
    try:
        item = await anext(responses)
    except generation.GenerationError as exc:
        raise ApiError.from_grpc(exc.code, exc.message) from exc
    response = web.StreamResponse(headers=sse.SSE_HEADERS)
    await response.prepare(request)
    try:
        if (first := bodies.first_chunk()) is not None:
            await response.write(first)
        while True:
            text, finish = _step(item, matcher)
            if text or finish is not None:
                await response.write(bodies.chunk(text, finish))
            if finish is not None:
                break
            try:
                item = await anext(responses)
            except generation.GenerationError as exc:
                await response.write(sse.error_event(ApiError.from_grpc(exc.code, exc.message)))
                break
        if parsed.include_usage:
            await response.write(bodies.usage_chunk(sse.usage(owned)))
        await response.write(sse.DONE)
    except ConnectionResetError:
        log.debug("client left mid-stream", extra={"request_id": parsed.response_id})
    return response
