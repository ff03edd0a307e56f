"""Starts a frontend: the client API (fastswitch.v1.Scheduler) with health and reflection, the
OpenAI-compatible HTTP API (openai_api/) on the same core, its session with the scheduler and
its streams from the workers, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal

from fastswitch import grpc_server, transport
from fastswitch.metrics_http import MetricsServer, start_metrics_server
from fastswitch.tenants import TenantRegistry
from fastswitch.v1 import control_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_frontend.config import FrontendConfig
from fastswitch_frontend.core import FrontendCore
from fastswitch_frontend.openai_api.chat_template import ChatTemplate
from fastswitch_frontend.openai_api.server import OpenAIServer
from fastswitch_frontend.servicer import FrontendServicer

log = logging.getLogger("fastswitch.frontend")
SERVICE_NAME = scheduler_pb2.DESCRIPTOR.services_by_name["Scheduler"].full_name
HEALTH_POLL_S = 0.05


class FrontendServer:
    """A running frontend; health turns SERVING once the scheduler's session is up and a
    worker serves the model."""

    def __init__(self, config: FrontendConfig, *, is_http_port_ephemeral: bool = False) -> None:
        """`is_http_port_ephemeral`: serve the HTTP API on a port the system picks (in-process
        stacks and tests, where a port picked beforehand could be taken meanwhile)."""
        self.config = config
        serves_http = bool(config.http_port) or is_http_port_ephemeral
        # Loaded first: a template that does not compile stops the frontend before it binds.
        template = ChatTemplate.for_model(config.model) if serves_http else None
        # The public port: tenants authenticate per call (bearer tokens), not with the cluster
        # token; the frontend presents the cluster token to the scheduler and the workers.
        self.server = transport.server(config.security, require_cluster_token=False)
        self.health = grpc_server.ServiceHealth(self.server, SERVICE_NAME)
        grpc_server.enable_reflection(self.server, SERVICE_NAME)
        self.port = transport.bind(self.server, config.listen, config.security)
        tenants = TenantRegistry.from_file(config.tenants_file, input_weight=1.0, output_weight=1.0,
                                           allow_anonymous_admin=config.allow_anonymous_admin)
        self.core = FrontendCore(config, tenants)
        self.http: OpenAIServer | None = None  # None: --http-port 0
        self._http_port = 0 if is_http_port_ephemeral else config.http_port
        if template is not None:
            self.http = OpenAIServer(self.core, model_name=config.served_model_name or config.model,
                                     template=template, security=config.security)
        self._control_channel = None
        self._health_task: asyncio.Task | None = None
        self.is_serving = False  # what health reports
        self.metrics_server: MetricsServer | None = None  # None: --metrics-port 0

    @property
    def address(self) -> str:
        return f"{self.config.listen.rsplit(':', 1)[0]}:{self.port}"

    @property
    def http_url(self) -> str | None:
        """The HTTP API's base URL (`http://HOST:PORT/v1`), None when it is off."""
        return None if self.http is None else self.http.url(self.config.listen.rsplit(":", 1)[0])

    async def start(self) -> None:
        self._control_channel = transport.channel(self.config.scheduler_addr, self.config.security)
        servicer = FrontendServicer(self.core, control_pb2_grpc.ControlStub(self._control_channel))
        scheduler_pb2_grpc.add_SchedulerServicer_to_server(servicer, self.server)
        await self.health.set(False)
        await self.server.start()
        if self.http is not None:
            await self.http.start(self.config.listen.rsplit(":", 1)[0], self._http_port)
        self.metrics_server = await start_metrics_server(
            self.core.metrics.registry, self.config.listen, self.config.metrics_port)
        self.core.start()
        self._health_task = asyncio.get_running_loop().create_task(self._follow_core())

    async def _follow_core(self) -> None:
        while True:
            now_serving = self.core.is_ready
            if now_serving != self.is_serving:
                await self.health.set(now_serving)
                self.is_serving = now_serving
                log.info("health", extra={"serving": now_serving})
            await asyncio.sleep(HEALTH_POLL_S)

    async def stop(self, grace_s: float = 2.0) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        await self.health.set(False)
        await self.core.stop()  # ends every request, gRPC's and HTTP's streams alike
        await self.server.stop(grace_s)
        if self.http is not None:
            await self.http.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        if self._control_channel is not None:
            await self._control_channel.close()


async def serve(config: FrontendConfig) -> None:
    server = FrontendServer(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info("frontend listening", extra={"address": server.address, "http": server.http_url,
                                          "scheduler": config.scheduler_addr})
    await stop.wait()
    await server.stop()
