"""The embedded Redis: private (127.0.0.1, protected mode, password), and reachable through
`connect()` with a password URL, plain and over TLS (rediss://). Its death with a SIGKILLed
parent is tested on a real kvstore process in tests/cli/test_kvstore.py."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fastswitch_kvstore.embedded_redis import HOST, EmbeddedRedis
from fastswitch_kvstore.entries import WorkerRegistration
from fastswitch_kvstore.errors import StoreUnavailableError
from fastswitch_kvstore.redis_index import RedisKVIndex, connect


@pytest.fixture
async def embedded() -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis()
    await server.start()
    yield server
    await server.stop()


def test_url_carries_the_password(embedded: EmbeddedRedis) -> None:
    assert embedded.url == f"redis://:{embedded.password}@127.0.0.1:{embedded.port}/0"
    assert len(embedded.password) >= 32


def _client(port: int, **kwargs) -> redis.Redis:
    # No retries: a refusal is the answer, not a hiccup.
    return redis.Redis(host=HOST, port=port, socket_timeout=2, retry=Retry(NoBackoff(), 0),
                       **kwargs)


def test_unauthenticated_clients_are_refused(embedded: EmbeddedRedis) -> None:
    with _client(embedded.port, protocol=2) as anonymous:
        with pytest.raises(redis.AuthenticationError, match="Authentication required"):
            anonymous.get("anything")  # the server answers -NOAUTH
    with _client(embedded.port, protocol=3) as anonymous:
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
    with _client(embedded.port, password="guessed") as guess:
        with pytest.raises(redis.AuthenticationError):
            guess.ping()


def test_listens_on_loopback_only_in_protected_mode(embedded: EmbeddedRedis) -> None:
    with redis.Redis.from_url(embedded.url, decode_responses=True) as client:
        assert client.config_get("bind")["bind"] == "127.0.0.1"
        assert client.config_get("protected-mode")["protected-mode"] == "yes"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"


def test_password_is_not_on_the_command_line(embedded: EmbeddedRedis) -> None:
    command_line = Path(f"/proc/{embedded.pid}/cmdline").read_bytes()
    assert command_line, "the server should be running"
    assert embedded.password.encode() not in command_line


async def test_stop_ends_the_server_and_is_idempotent() -> None:
    server = EmbeddedRedis()
    await server.start()
    pid = server.pid
    await server.stop()
    await server.stop()
    assert server.pid is None
    assert not Path(f"/proc/{pid}").exists()  # ended and reaped


async def _register_and_snapshot(redis_url: str) -> int:
    index = RedisKVIndex(connect(redis_url, timeout_s=2.0), "fastswitch")
    try:
        await index.register_worker(WorkerRegistration("w1", "boot-1", 1000))
        return (await index.snapshot("w1")).capacity_bytes
    finally:
        await index.close()


async def test_connect_uses_the_password_in_the_url(embedded: EmbeddedRedis) -> None:
    assert await _register_and_snapshot(embedded.url) == 1000
    wrong = embedded.url.replace(embedded.password, "wrong-password")
    with pytest.raises(StoreUnavailableError):
        await _register_and_snapshot(wrong)


async def _tls_proxy(
    ssl_context: ssl.SSLContext, target_port: int
) -> tuple[asyncio.Server, int]:
    """Terminates TLS on 127.0.0.1 and forwards to `target_port` (as stunnel would: the bundled
    valkey-server is built without TLS)."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer) -> None:
        server_reader, server_writer = await asyncio.open_connection(HOST, target_port)
        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

    server = await asyncio.start_server(handle, HOST, 0, ssl=ssl_context)
    return server, server.sockets[0].getsockname()[1]


async def test_connect_speaks_tls_for_rediss_urls(embedded: EmbeddedRedis, tls_files) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_files.server_cert, tls_files.server_key)
    proxy, port = await _tls_proxy(context, embedded.port)
    try:
        url = (f"rediss://:{embedded.password}@127.0.0.1:{port}/0"
               f"?ssl_ca_certs={tls_files.ca}&ssl_cert_reqs=required")
        assert await _register_and_snapshot(url) == 1000
        # A server the CA did not sign is refused: TLS is verified, not just spoken.
        untrusted = url.replace(str(tls_files.ca), str(tls_files.client_cert))
        with pytest.raises(StoreUnavailableError):
            await _register_and_snapshot(untrusted)
    finally:
        proxy.close()
        await proxy.wait_closed()
