"""The kvstore process: gRPC server, Redis index, health that follows Redis, graceful stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc

from fastswitch import transport
from fastswitch.grpc_server import ServiceHealth, enable_reflection
from fastswitch.metrics_http import MetricsServer, start_metrics_server
from fastswitch.v1 import kvstore_pb2_grpc
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.embedded_redis import HOST, EmbeddedRedis
from fastswitch_kvstore.metrics import KVStoreMetrics
from fastswitch_kvstore.redis_index import RedisKVIndex, connect
from fastswitch_kvstore.servicer import SERVICE_NAME, KVStoreServicer

logger = logging.getLogger("fastswitch.kvstore")


class KVStoreServer:
    """One kvstore in-process: `await start()` returns the bound port, `await stop()` ends it.

    Health is NOT_SERVING until Redis answers and follows Redis afterwards (pinged every
    `health_check_interval_s`); requests while Redis is down fail with UNAVAILABLE.
    """

    def __init__(self, config: KVStoreConfig) -> None:
        self._config = config
        self._server: grpc.aio.Server | None = None
        self._health: ServiceHealth | None = None
        self._index: RedisKVIndex | None = None
        self._embedded_redis: EmbeddedRedis | None = None  # when config.redis_url is None
        self._health_task: asyncio.Task[None] | None = None
        self._is_stopping = asyncio.Event()
        self.port: int | None = None
        self.is_redis_up = False  # the latest health ping's answer
        self.metrics = KVStoreMetrics(lambda: self.is_redis_up)
        self.metrics_server: MetricsServer | None = None  # None: --metrics-port 0

    async def start(self) -> int:
        """Starts serving; returns the bound port. Does not wait for Redis."""
        if self._server is not None:
            raise RuntimeError("kvstore server already started")
        self._is_stopping = asyncio.Event()
        try:
            redis_url = self._config.redis_url or await self._start_embedded_redis()
            self._index = RedisKVIndex(
                connect(redis_url, timeout_s=self._config.redis_timeout_s),
                self._config.key_prefix,
            )
            # Only the cluster's own scheduler and workers may call it.
            self._server = transport.server(self._config.security, require_cluster_token=True)
            kvstore_pb2_grpc.add_KVStoreServicer_to_server(
                KVStoreServicer(self._index, self.metrics), self._server
            )
            self._health = ServiceHealth(self._server, SERVICE_NAME)
            await self._health.set(False)  # the health servicer starts out SERVING
            enable_reflection(self._server, SERVICE_NAME)
            self.port = transport.bind(self._server, self._config.listen,
                                       self._config.security)
            await self._server.start()
            self.metrics_server = await start_metrics_server(
                self.metrics.registry, self._config.listen, self._config.metrics_port)
        except BaseException:
            await self.stop(grace_s=0)
            raise
        self._health_task = asyncio.create_task(self._follow_redis_health())
        logger.info(
            "kvstore serving",
            extra={
                "listen": self._config.listen,
                "port": self.port,
                "key_prefix": self._config.key_prefix,
            },
        )
        return self.port

    async def _start_embedded_redis(self) -> str:
        embedded = EmbeddedRedis()
        self._embedded_redis = embedded  # before start: stop() ends a half-started one too
        url = await embedded.start()
        logger.warning(
            "no redis_url given: started an embedded valkey-server for local use; "
            "the KV index lives only as long as this process",
            extra={"redis_address": f"{HOST}:{embedded.port}", "redis_pid": embedded.pid},
        )
        return url

    async def _follow_redis_health(self) -> None:
        # Ends when `_is_stopping` is set rather than by cancellation: redis-py can swallow a
        # cancellation that lands inside a command, which would leave this loop running.
        is_serving = False
        while not self._is_stopping.is_set():
            is_redis_up = self.is_redis_up = await self._index.ping()
            if is_redis_up != is_serving and not self._is_stopping.is_set():
                await self._health.set(is_redis_up)
                is_serving = is_redis_up
                if is_redis_up:
                    logger.info("redis answers: health SERVING")
                else:
                    logger.warning("redis does not answer: health NOT_SERVING")
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation.
                async with asyncio.timeout(self._config.health_check_interval_s):
                    await self._is_stopping.wait()

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING, then lets in-flight RPCs finish for `grace_s` (default from
        config) and releases Redis. Safe to call more than once."""
        self._is_stopping.set()  # the health loop no longer changes the status after this
        if self._health is not None:
            await self._health.set(False)
        if self._health_task is not None:
            # One ping takes at most ~3 Redis timeouts (two retries); no cancel needed.
            await asyncio.wait([self._health_task], timeout=3 * self._config.redis_timeout_s + 1)
            self._health_task.cancel()  # no-op when it ended, as it should have
            self._health_task = None
        if self._server is not None:
            grace = self._config.shutdown_grace_s if grace_s is None else grace_s
            await self._server.stop(grace)
            self._server = None
        if self.metrics_server is not None:
            await self.metrics_server.stop()
            self.metrics_server = None
        if self._index is not None:
            await self._index.close()
            self._index = None
        if self._embedded_redis is not None:
            await self._embedded_redis.stop()
            self._embedded_redis = None


async def serve(config: KVStoreConfig, *, stop_event: asyncio.Event | None = None) -> None:
    """Runs a kvstore until SIGTERM/SIGINT (or `stop_event` is set), then stops gracefully."""
    server = KVStoreServer(config)
    await server.start()
    stop_event = stop_event or asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        logger.info("stop requested", extra={"signal": signum.name})
        stop_event.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await stop_event.wait()
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await server.stop()
        logger.info("kvstore stopped")
