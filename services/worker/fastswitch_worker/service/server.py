"""Starts the worker: engine, gRPC server with health and reflection, graceful shutdown, and
an exit for an engine that cannot go on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2_grpc

from fastswitch import grpc_server, transport
from fastswitch.metrics_http import MetricsServer, start_metrics_server
from fastswitch.v1 import worker_pb2, worker_pb2_grpc
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.metrics import WorkerMetrics
from fastswitch_worker.service.servicer import WorkerServicer
from fastswitch_worker.service.worker_service import WorkerService

log = logging.getLogger("fastswitch.worker")
SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["Worker"].full_name
EXIT_ENGINE_FAILED = 1  # serve()'s result when the engine became unrecoverable
MAX_LIVENESS_CHECK_INTERVAL_S = 1.0


class WorkerHealth:
    """grpc.health.v1 of a worker: readiness on "" and fastswitch.v1.Worker, liveness (the
    engine loop makes progress) on grpc_server.LIVENESS_SERVICE."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)
        self.is_live = False

    async def set_ready(self, is_ready: bool) -> None:
        status = grpc_server.SERVING if is_ready else grpc_server.NOT_SERVING
        await self._servicer.set("", status)
        await self._servicer.set(SERVICE_NAME, status)

    async def set_live(self, is_live: bool) -> None:
        self.is_live = is_live
        status = grpc_server.SERVING if is_live else grpc_server.NOT_SERVING
        await self._servicer.set(grpc_server.LIVENESS_SERVICE, status)


class WorkerServer:
    """A running worker; `port` is the bound port (useful with port 0 in tests). `failed` is
    set once the engine is unrecoverable and health says NOT_SERVING: serve() then exits."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        # Only the cluster's own scheduler may open a session or read stats.
        self.server = transport.server(config.security, require_cluster_token=True)
        self.health = WorkerHealth(self.server)
        grpc_server.enable_reflection(self.server, SERVICE_NAME)
        self.port = transport.bind(self.server, config.listen, config.security)
        self.service: WorkerService | None = None
        self.failed = asyncio.Event()
        self._watchdog: asyncio.Task | None = None
        self.metrics_server: MetricsServer | None = None  # None: --metrics-port 0

    @property
    def address(self) -> str:
        return f"{self.config.listen.rsplit(':', 1)[0]}:{self.port}"

    async def start(self) -> None:
        """Serve at once (readiness and liveness NOT_SERVING while the model loads: a startup
        probe bounds the load), load the model, then report ready and live."""
        self.service = WorkerService(self.config)
        worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(self.service), self.server)
        await self.health.set_ready(False)
        await self.health.set_live(False)
        await self.server.start()
        self.metrics_server = await start_metrics_server(
            WorkerMetrics(self.service).registry, self.config.listen, self.config.metrics_port)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_engine())
        if await self.service.start():
            if self.service.failure is None:
                await self.health.set_live(self.service.engine_loop.is_live(
                    self.config.liveness_timeout_s))
                await self.health.set_ready(True)
                log.info("worker ready", extra={"address": self.address, "worker_id": self.config.worker_id})
        else:  # nothing to serve without a model: exit (non-zero) so the failure shows at once
            self.failed.set()

    async def _watch_engine(self) -> None:
        """Liveness follows the engine thread's heartbeat; an unrecoverable engine takes
        readiness and liveness down and sets `failed`."""
        service = self.service
        timeout_s = self.config.liveness_timeout_s
        interval_s = min(MAX_LIVENESS_CHECK_INTERVAL_S, timeout_s / 4)
        while not service.failed.is_set():
            is_live = service.engine_loop.is_live(timeout_s)
            if is_live != self.health.is_live:
                await self.health.set_live(is_live)
                if is_live:
                    log.info("engine loop is live: liveness SERVING")
                elif service.engine_loop.ready.is_set():
                    log.error("engine loop made no progress: liveness NOT_SERVING",
                              extra={"liveness_timeout_s": timeout_s})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):  # not wait_for: see worker_link.py
                    await service.failed.wait()
        await self.health.set_ready(False)
        await self.health.set_live(False)
        self.failed.set()

    async def stop(self, grace_s: float = 2.0) -> None:
        """Drain (finish or hand back requests), then stop serving and the engine. An engine
        that failed has nothing to drain."""
        await self.health.set_ready(False)
        if self.service is not None and self.service.failure is None:
            await self.service.drain()
        await self.server.stop(grace_s)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self.service is not None:
            await self.service.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()


async def serve(config: WorkerConfig) -> int:
    """Run until SIGTERM/SIGINT (returns 0) or until the engine is unrecoverable (returns
    EXIT_ENGINE_FAILED, so the process exits non-zero and is restarted)."""
    server = WorkerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    waits = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(server.failed.wait())}
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in waits:
        task.cancel()
    if server.failed.is_set():
        log.error("exiting: the engine failed to load or is unrecoverable",
                  extra={"exit_status": EXIT_ENGINE_FAILED})
        await server.stop()
        return EXIT_ENGINE_FAILED
    log.info("draining")
    await server.stop()
    return 0
