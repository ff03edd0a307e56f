"""Prometheus text at `/metrics`, served on the service's own asyncio loop from one registry.

Each service instance owns a `prometheus_client.CollectorRegistry` (never the process-wide
default: tests and `fastswitch up` run several services in one process) and passes it here.
The server runs on the caller's event loop, so collectors that read live state at scrape time
(the scheduler's request table, the frontend's requests) run on the same thread that mutates
that state: they need no locks. A scrape renders a few kilobytes; the loop is blocked for
well under a millisecond.

Deliberately tiny HTTP/1.1: one GET (or HEAD) per connection, then the connection closes.
That is all Prometheus, Grafana agents and curl need; anything else gets a definite status
(400, 404, 405, 431) and a malformed or stalled client never touches the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from fastswitch.settings import setting

log = logging.getLogger("fastswitch.metrics")

METRICS_PATH = "/metrics"
# A request line plus headers larger than this is not a scrape.
MAX_HEADER_BYTES = 16 * 1024
# A client that sends no complete request within this long is dropped.
READ_TIMEOUT_S = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class MetricsServer:
    """`/metrics` of one registry on HOST:PORT. `start()` binds (raises OSError when the port
    is taken); `port` is the bound port; `stop()` closes the listener."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{METRICS_PATH}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host or None, self.port,
                                                  reuse_address=True, limit=MAX_HEADER_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                status, headers, body = await self._answer(reader)
            writer.write(_response(status, headers, body))
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return _text(431, "request headers too large\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return _text(400, "malformed request line\n")
        method, target, _ = parts
        request_headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                request_headers[name.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        if path not in (METRICS_PATH, "/"):
            return _text(404, f"not found: only {METRICS_PATH} is served\n")
        if method not in ("GET", "HEAD"):
            return _text(405, "only GET and HEAD are allowed\n", {"Allow": "GET, HEAD"})
        if path == "/":
            return _text(200, f"FastSwitch metrics: {METRICS_PATH}\n")
        try:
            encoder, content_type = choose_encoder(request_headers.get("accept", ""))
            body = encoder(self.registry)
        except Exception:
            log.exception("collecting metrics failed")
            return _text(500, "collecting metrics failed\n")
        headers = {"Content-Type": content_type}
        if "gzip" in request_headers.get("accept-encoding", ""):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        if method == "HEAD":
            headers["Content-Length"] = str(len(body))
            body = b""
        return 200, headers, body


def _text(status: int, text: str,
          extra: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(extra or {})}, text.encode()


def _response(status: int, headers: dict[str, str], body: bytes) -> bytes:
    headers = {**headers, "Connection": "close"}
    headers.setdefault("Content-Length", str(len(body)))
    head = [f"HTTP/1.1 {status} {REASONS[status]}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def start_metrics_server(registry: CollectorRegistry, listen: str,
                               port: int) -> MetricsServer | None:
    """Serve `registry` on the host of the service's gRPC `listen` address and `port`; None
    when `port` is 0 (metrics off) or cannot be bound. A taken port is logged, not raised:
    metrics must never keep a service from serving (in a pod nothing else holds the port;
    services started in one process by tests share the defaults, and only the first gets it).
    """
    if port == 0:
        return None
    server = MetricsServer(registry, listen.rsplit(":", 1)[0].strip("[]"), port)
    try:
        await server.start()
    except OSError as exc:
        log.warning("metrics port unavailable: no /metrics for this service",
                    extra={"port": port, "error": str(exc)})
        return None
    log.info("metrics served", extra={"url": server.url})
    return server


def metrics_port_setting(default: int) -> int:
    """The `--metrics-port` field of a service's config (declared alike for all four)."""
    return setting(default, metavar="PORT", help=(
        f"HTTP port serving Prometheus metrics at {METRICS_PATH}, on the host of --listen; 0 "
        "turns them off"))


def check_metrics_port(port: int) -> None:
    """Raises ValueError unless `port` is 0 (off) or a TCP port."""
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics_port must be 0 (off) or a TCP port, got {port}")
