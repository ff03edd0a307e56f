"""How every service listens and calls: TLS when configured, the cluster credential on internal
ports, keepalives, and one guard against undecodable messages. One module, so no port is
forgotten.

Internal services (worker, kvstore) accept only callers that present the cluster's shared
credential as `authorization: Bearer <cluster token>`; `grpc.health.v1` stays open because
Kubernetes probes cannot send metadata. The scheduler's public port authenticates tenants itself.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from fastswitch.settings import setting

log = logging.getLogger("fastswitch.transport")

HEALTH_METHOD_PREFIX = "/grpc.health.v1.Health/"
AUTHORIZATION = "authorization"
CLUSTER_TOKEN_ENV = "FASTSWITCH_CLUSTER_TOKEN"
# Sent by a scheduler when it opens a worker session: when two schedulers contend (a rolling
# update), the one with the larger epoch (its start time in ns) holds the session.
SCHEDULER_EPOCH_METADATA = "x-fastswitch-scheduler-epoch"
MIN_CLUSTER_TOKEN_CHARS = 16

MAX_PENDING_CALLS = 1 << 16
# A dead peer (SIGSTOP, pulled cable, partition) is noticed within about 15 s, not never.
CLIENT_OPTIONS = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # A peer that comes back (a restarted worker) is reached within a couple of seconds, not
    # after gRPC's default backoff of up to two minutes; and a new channel does not inherit the
    # backoff of an earlier channel's shared subchannel.
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.use_local_subchannel_pool", 1),
)
SERVER_OPTIONS = (
    # A port in use is an error, not a silent share of its traffic with another process.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    # gRPC core queues calls the application has not picked up yet and silently CANCELs those
    # beyond a soft limit of 1,000 (when older than a second) and a hard limit of 3,000. The
    # asyncio server picks calls up one at a time, so a burst of a few thousand streams lost a
    # third of them with no log line. With room here, overload reaches the scheduler's queue
    # caps, which answer RESOURCE_EXHAUSTED.
    ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
    ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
)


class TransportConfigError(ValueError):
    """A TLS or credential setting is incomplete or unreadable."""


@dataclass(frozen=True)
class TransportSecurity:
    """Transport security: TLS files and the cluster credential of one process (its server
    side and its client side)."""

    tls_cert: str = setting("", metavar="PEM", help=(
        "serve TLS with this certificate chain (PEM file); also the client certificate of "
        "mTLS calls"))
    tls_key: str = setting("", metavar="PEM", help="private key (PEM file) of --tls-cert")
    tls_client_ca: str = setting("", metavar="PEM", help=(
        "require client certificates signed by this CA (PEM file), i.e. mTLS"))
    tls_ca: str = setting("", metavar="PEM", help=(
        "call the other services over TLS, verifying them against this CA (PEM file)"))
    # Never on a command line (other local users can read those): in the environment, or in
    # a file named by --cluster-token-file.
    cluster_token: str = setting("", flag="", env=CLUSTER_TOKEN_ENV, secret=True, from_file=True,
                                 help="the cluster's shared credential, which workers and the "
                                      "kvstore ask of every caller")

    def __post_init__(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise TransportConfigError("--tls-cert and --tls-key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise TransportConfigError("--tls-client-ca needs --tls-cert/--tls-key (mTLS is TLS)")
        for name in ("tls_cert", "tls_key", "tls_client_ca", "tls_ca"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise TransportConfigError(f"{name}: no such file {path!r}")
        if self.cluster_token and (len(self.cluster_token) < MIN_CLUSTER_TOKEN_CHARS
                                   or not self.cluster_token.isprintable()
                                   or " " in self.cluster_token):
            raise TransportConfigError(
                f"the cluster token must be at least {MIN_CLUSTER_TOKEN_CHARS} printable "
                "characters without spaces")

    @property
    def serves_tls(self) -> bool:
        return bool(self.tls_cert)

    @property
    def calls_tls(self) -> bool:
        return bool(self.tls_ca)


# ---- servers ---------------------------------------------------------------------------------
def server(security: TransportSecurity, *, require_cluster_token: bool,
           maximum_concurrent_rpcs: int | None = None) -> grpc.aio.Server:
    """A grpc.aio server that answers undecodable messages with INVALID_ARGUMENT and, when
    `require_cluster_token`, refuses callers without the cluster credential (UNAUTHENTICATED)."""
    interceptors: list[grpc.aio.ServerInterceptor] = [DecodeGuard()]
    if require_cluster_token:
        interceptors.insert(0, ClusterAuth(security.cluster_token))
    return grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS,
                           maximum_concurrent_rpcs=maximum_concurrent_rpcs)


def bind(server: grpc.aio.Server, address: str, security: TransportSecurity) -> int:
    """Bind `address` (TLS when configured); returns the port. Raises OSError when the port is
    taken or the address is invalid."""
    try:
        if security.serves_tls:
            port = server.add_secure_port(address, server_credentials(security))
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpc raises RuntimeError("Failed to bind ...")
        raise OSError(f"cannot bind gRPC server to {address}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address} (in use?)")
    return port


def server_credentials(security: TransportSecurity) -> grpc.ServerCredentials:
    pair = (_read(security.tls_key), _read(security.tls_cert))
    client_ca = _read(security.tls_client_ca) if security.tls_client_ca else None
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


# ---- clients ---------------------------------------------------------------------------------
def channel(address: str, security: TransportSecurity, *, server_name: str = "",
            inject_token: bool = True) -> grpc.aio.Channel:
    """An asyncio channel to another component: TLS when `tls_ca` is set, the cluster
    credential on every call when there is one, keepalives so a dead peer is noticed.
    `server_name`: the name the server's certificate must carry when `address` is an IP that
    was resolved from it (a pod behind a headless Service).

    `inject_token=False` leaves the credential to the caller (`metadata=stream_metadata(...)`
    on each call): for long-lived streams, where grpc.aio's interceptors would add a task per
    message."""
    interceptors = (_token_injectors(security.cluster_token)
                    if security.cluster_token and inject_token else None)
    if security.calls_tls:
        options = CLIENT_OPTIONS
        if server_name and not _is_ip(server_name):
            options = (*options, ("grpc.ssl_target_name_override", server_name))
        return grpc.aio.secure_channel(address, channel_credentials(security),
                                       options=options, interceptors=interceptors)
    return grpc.aio.insecure_channel(address, options=CLIENT_OPTIONS, interceptors=interceptors)


def sync_channel(address: str, security: TransportSecurity) -> grpc.Channel:
    """A blocking channel (CLI, probes); pass call metadata yourself."""
    if security.calls_tls:
        return grpc.secure_channel(address, channel_credentials(security), options=CLIENT_OPTIONS)
    return grpc.insecure_channel(address, options=CLIENT_OPTIONS)


def channel_credentials(security: TransportSecurity) -> grpc.ChannelCredentials:
    """TLS credentials verifying servers against `tls_ca` (the system's CAs when unset), with
    `tls_cert`/`tls_key` as the client certificate for mTLS when set."""
    def optional(path: str) -> bytes | None:
        return _read(path) if path else None

    return grpc.ssl_channel_credentials(root_certificates=optional(security.tls_ca),
                                        private_key=optional(security.tls_key),
                                        certificate_chain=optional(security.tls_cert))


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION, f"Bearer {token}"),) if token else ()


def stream_metadata(security: TransportSecurity) -> tuple[tuple[str, str], ...]:
    """The cluster credential as call metadata, for calls on an `inject_token=False` channel."""
    return bearer_metadata(security.cluster_token)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TransportConfigError(f"cannot read {path}: {exc}") from exc


# ---- interceptors ----------------------------------------------------------------------------
class _Undecodable:
    """Stands in for a message whose bytes did not parse; the guarded handler refuses it."""


UNDECODABLE = _Undecodable()
UNDECODABLE_MESSAGE = "request message could not be decoded"


class RateLimitedLog:
    """At most one log line per `interval_s`, saying how many events it stands for."""

    def __init__(self, logger: logging.Logger, message: str, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._message = message
        self._interval_s = interval_s
        self._last_s = float("-inf")
        self._num_suppressed = 0

    def __call__(self, **extra) -> None:
        now = time.monotonic()
        if now - self._last_s < self._interval_s:
            self._num_suppressed += 1
            return
        self._logger.warning(self._message, extra={**extra, "num_since_last_line": self._num_suppressed + 1})
        self._last_s = now
        self._num_suppressed = 0


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Undecodable request bytes end the call with INVALID_ARGUMENT and at most one log line
    every few seconds, instead of UNKNOWN and a traceback per message."""

    def __init__(self) -> None:
        self._log = RateLimitedLog(log, "undecodable request message refused")

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        deserialize = handler.request_deserializer

        def safe_deserialize(data: bytes):
            try:
                return deserialize(data)
            except Exception:
                self._log(method=method)
                return UNDECODABLE

        return _wrap(handler, _refusing_undecodable, request_deserializer=safe_deserialize)


class ClusterAuth(grpc.aio.ServerInterceptor):
    """Every call but health checks must carry `authorization: Bearer <cluster token>`.
    Without a configured token the port refuses everything but health: an internal service
    is never open by accident."""

    def __init__(self, cluster_token: str) -> None:
        self._expected = f"Bearer {cluster_token}".encode() if cluster_token else None
        self._log = RateLimitedLog(log, "internal call without a valid cluster credential refused")

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(HEALTH_METHOD_PREFIX) or self._is_authorised(
                handler_call_details.invocation_metadata):
            return handler
        self._log(method=method)
        message = ("this port accepts only the cluster's own components (missing or wrong "
                   "cluster credential)" if self._expected else
                   "this service has no cluster credential configured and refuses all calls")
        return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, message)

    def _is_authorised(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        if self._expected is None:
            return False
        presented = next((value for key, value in metadata or () if key == AUTHORIZATION), "")
        if isinstance(presented, str):
            presented = presented.encode()
        return hmac.compare_digest(presented, self._expected)


def _wrap(handler: grpc.RpcMethodHandler, wrap_behaviour: Callable, **replace) -> grpc.RpcMethodHandler:
    kind = _kind(handler)
    return handler._replace(**{kind: wrap_behaviour(getattr(handler, kind), handler), **replace})


def _kind(handler: grpc.RpcMethodHandler) -> str:
    return {(False, False): "unary_unary", (False, True): "unary_stream",
            (True, False): "stream_unary", (True, True): "stream_stream"}[
        (handler.request_streaming, handler.response_streaming)]


def _refusing_undecodable(behaviour: Callable, handler: grpc.RpcMethodHandler) -> Callable:
    if handler.request_streaming:
        async def checked_stream(request_iterator, context):
            async def messages():
                async for message in request_iterator:
                    if message is UNDECODABLE:
                        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_MESSAGE)
                    yield message
            result = behaviour(messages(), context)
            if handler.response_streaming:
                async for response in result:
                    yield response
            else:
                yield await result
        return checked_stream if handler.response_streaming else _first_of(checked_stream)

    if handler.response_streaming:
        async def checked_unary_stream(request, context):
            if request is UNDECODABLE:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_MESSAGE)
            async for response in behaviour(request, context):
                yield response
        return checked_unary_stream

    async def checked_unary(request, context):
        if request is UNDECODABLE:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, UNDECODABLE_MESSAGE)
        return await behaviour(request, context)
    return checked_unary


def _first_of(stream_behaviour: Callable) -> Callable:
    async def unary(request_iterator, context):
        async for response in stream_behaviour(request_iterator, context):
            return response
    return unary


def _refusing(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(_request, context):
        await context.abort(code, message)

    async def refuse_stream(_request, context):
        await context.abort(code, message)
        yield  # pragma: no cover (makes this an async generator)

    kind = _kind(handler)
    return handler._replace(**{kind: refuse_stream if handler.response_streaming else refuse})


def _token_injectors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """One interceptor per call kind: grpc.aio files each interceptor under the first kind it
    matches, so one class implementing all four would only see unary calls."""
    metadata = bearer_metadata(token)

    def with_token(details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        return details._replace(metadata=grpc.aio.Metadata(*(details.metadata or ()), *metadata))

    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation, client_call_details, request):
            return await continuation(with_token(client_call_details), request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(self, continuation, client_call_details, request):
            return await continuation(with_token(client_call_details), request)

    class StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
        async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
            return await continuation(with_token(client_call_details), request_iterator)

    class StreamStream(grpc.aio.StreamStreamClientInterceptor):
        async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
            return await continuation(with_token(client_call_details), request_iterator)

    return [UnaryUnary(), UnaryStream(), StreamUnary(), StreamStream()]
