"""Starts the worker: engine, gRPC server with health and reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from fastswitch import grpc_server, transport
from fastswitch.v1 import worker_pb2, worker_pb2_grpc
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.servicer import WorkerServicer
from fastswitch_worker.service.worker_service import WorkerService

log = logging.getLogger("fastswitch.worker")
SERVICE_NAME = worker_pb2.DESCRIPTOR.services_by_name["Worker"].full_name


class WorkerServer:
    """A running worker; `port` is the bound port (useful with port 0 in tests)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        # Only the cluster's own scheduler may open a session or read stats.
        self.server = transport.server(config.security, require_cluster_token=True)
        self.health = grpc_server.ServiceHealth(self.server, SERVICE_NAME)
        grpc_server.enable_reflection(self.server, SERVICE_NAME)
        self.port = transport.bind(self.server, config.listen, config.security)
        self.service: WorkerService | None = None

    @property
    def address(self) -> str:
        return f"{self.config.listen.rsplit(':', 1)[0]}:{self.port}"

    async def start(self) -> None:
        """Serve at once (health NOT_SERVING), load the model, then report SERVING."""
        self.service = WorkerService(self.config)
        worker_pb2_grpc.add_WorkerServicer_to_server(WorkerServicer(self.service), self.server)
        await self.health.set(False)
        await self.server.start()
        if await self.service.start():
            await self.health.set(True)
            log.info("worker ready", extra={"address": self.address, "worker_id": self.config.worker_id})
        else:
            log.error("worker stays NOT_SERVING: the engine failed to load")

    async def stop(self, grace_s: float = 2.0) -> None:
        """Drain (finish or hand back requests), then stop serving and the engine."""
        await self.health.set(False)
        if self.service is not None:
            await self.service.drain()
        await self.server.stop(grace_s)
        if self.service is not None:
            await self.service.stop()


async def serve(config: WorkerConfig) -> None:
    """Run until SIGTERM/SIGINT."""
    server = WorkerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("draining")
    await server.stop()
