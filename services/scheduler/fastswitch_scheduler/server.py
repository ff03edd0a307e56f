"""Starts the scheduler (the control plane): core, the Control service for the frontends, health
and reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from fastswitch import grpc_server, transport
from fastswitch.metrics_http import MetricsServer, start_metrics_server
from fastswitch.tenants import TenantRegistry
from fastswitch.v1 import control_pb2, control_pb2_grpc
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.control_servicer import ControlServicer
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.metrics import SchedulerMetrics

log = logging.getLogger("fastswitch.scheduler")
SERVICE_NAME = control_pb2.DESCRIPTOR.services_by_name["Control"].full_name


class SchedulerServer:
    """A running scheduler; health turns SERVING once a worker is connected."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        # Only the cluster's own frontends call it: tenants authenticate at the frontends.
        self.server = transport.server(config.security, require_cluster_token=True)
        self.health = grpc_server.ServiceHealth(self.server, SERVICE_NAME)
        grpc_server.enable_reflection(self.server, SERVICE_NAME)
        self.port = transport.bind(self.server, config.listen, config.security)
        tenants = TenantRegistry.from_file(config.tenants_file, input_weight=config.vtc_input_weight,
                                           output_weight=config.vtc_output_weight,
                                           allow_anonymous_admin=config.allow_anonymous_admin)
        self.core = SchedulerCore(config, tenants)
        control_pb2_grpc.add_ControlServicer_to_server(ControlServicer(self.core), self.server)
        self._health_task: asyncio.Task | None = None
        self.is_serving = False  # what health reports
        self.metrics = SchedulerMetrics(self.core)
        self.metrics_server: MetricsServer | None = None  # None: --metrics-port 0

    @property
    def address(self) -> str:
        return f"{self.config.listen.rsplit(':', 1)[0]}:{self.port}"

    async def start(self) -> None:
        await self.health.set(False)
        await self.server.start()
        self.metrics_server = await start_metrics_server(
            self.metrics.registry, self.config.listen, self.config.metrics_port)
        self.metrics.start()
        await self.core.start()
        self._health_task = asyncio.get_running_loop().create_task(self._follow_workers())

    async def _follow_workers(self) -> None:
        """Health mirrors whether at least one worker is connected."""
        while True:
            now_serving = bool(self.core.ready_links())
            if now_serving != self.is_serving:
                await self.health.set(now_serving)
                self.is_serving = now_serving
                log.info("health", extra={"serving": now_serving})
            await asyncio.sleep(0.05)

    async def stop(self, grace_s: float = 2.0) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        await self.health.set(False)
        await self.core.stop()
        await self.server.stop(grace_s)
        await self.metrics.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()


async def serve(config: SchedulerConfig) -> None:
    server = SchedulerServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("scheduler listening", extra={"address": server.address, "policy": config.policy})
    await stop.wait()
    await server.stop()
