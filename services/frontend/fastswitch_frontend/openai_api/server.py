"""The frontend's HTTP server (aiohttp, on the frontend's event loop): TLS with the frontend's
own certificate when it serves TLS, OpenAI error bodies for every error (unknown routes and
oversized bodies included), and a bounded graceful stop."""

from __future__ import annotations

import logging
import ssl

from aiohttp import web

from fastswitch import transport
from fastswitch_frontend.core import FrontendCore
from fastswitch_frontend.openai_api.chat_template import ChatTemplate
from fastswitch_frontend.openai_api.errors import ApiError
from fastswitch_frontend.openai_api.routes import OpenAIRoutes

log = logging.getLogger("fastswitch.frontend.http")
# Prompts are bounded by the model's context; this only bounds what is read before that check.
MAX_BODY_BYTES = 32 << 20
# At stop the core has already ended every request, so handlers finish at once; this bounds
# connections that do not close.
SHUTDOWN_TIMEOUT_S = 2.0


class OpenAIServer:
    def __init__(self, core: FrontendCore, *, model_name: str, template: ChatTemplate,
                 security: transport.TransportSecurity) -> None:
        self.routes = OpenAIRoutes(core, model_name=model_name, template=template)
        self.security = security
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, host: str) -> str:
        """The API's base URL as clients configure it (`.../v1`)."""
        scheme = "https" if self.security.serves_tls else "http"
        return f"{scheme}://{host}:{self.port}/v1"

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (port 0: any free port); returns the port. Raises OSError when
        the port is taken."""
        app = web.Application(middlewares=[_openai_errors], client_max_size=MAX_BODY_BYTES)
        self.routes.add_to(app)
        # handler_cancellation: a client that disconnects cancels its handler, which cancels
        # its request on the worker (generation.responses), instead of computing for nobody.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        site = web.TCPSite(runner, host.strip("[]"), port, ssl_context=_ssl_context(self.security))
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(f"cannot bind HTTP server to {host}:{port}: {exc}") from exc
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@web.middleware
async def _openai_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:  # unknown route, wrong method, body too large
        if exc.status < 400:
            raise
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        return ApiError(exc.status, f"{exc.reason}: {request.method} {request.path}"[:300],
                        type=kind).response()
    except Exception:  # one bad request never takes the server down
        log.exception("HTTP request failed", extra={"path": request.path})
        return ApiError(500, "internal error", type="server_error").response()


def _ssl_context(security: transport.TransportSecurity) -> ssl.SSLContext | None:
    """The gRPC port's TLS settings on the HTTP port: its certificate, and client certificates
    required when it requires them (mTLS)."""
    if not security.serves_tls:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(security.tls_cert, security.tls_key)
    if security.tls_client_ca:
        context.load_verify_locations(security.tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
