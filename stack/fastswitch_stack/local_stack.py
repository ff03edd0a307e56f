"""The whole stack in one process on 127.0.0.1: kvstore, worker(s), scheduler, frontend.

For the service tests, which inspect engine and scheduler state directly; `fastswitch up`
and `fastswitch bench` start the same services as processes (process_stack.py).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from fastswitch import transport
from fastswitch_frontend.config import FrontendConfig
from fastswitch_frontend.server import FrontendServer
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.server import KVStoreServer
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.server import SchedulerServer
from fastswitch_stack.process_stack import free_port
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.server import WorkerServer

READY_TIMEOUT_S = 120.0


@dataclass
class LocalStack:
    kvstore: KVStoreServer
    kvstore_config: KVStoreConfig
    security: transport.TransportSecurity  # what the cluster's own components present
    kvstore_port: int
    workers: list[WorkerServer]
    scheduler: SchedulerServer
    frontend: FrontendServer

    @property
    def address(self) -> str:
        """The client API (the frontend's)."""
        return self.frontend.address

    @property
    def http_url(self) -> str:
        """The frontend's OpenAI-compatible API, `http://127.0.0.1:PORT/v1`."""
        assert self.frontend.http_url is not None
        return self.frontend.http_url

    async def until_scheduler_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until the scheduler holds no request: it has heard every finish, so its
        counters include every token served (workers report counts coalesced over
        --progress-interval-ms, after the clients have their last token)."""
        async with asyncio.timeout(timeout_s):
            while self.scheduler.core.requests:
                await asyncio.sleep(0.01)

    async def restart_scheduler(self) -> SchedulerServer:
        """Stop the scheduler and start a new one on the same port (the frontends and the
        workers reconnect to it by themselves); returns it once every worker is connected."""
        config = self.scheduler.config
        await self.scheduler.stop(0)
        self.scheduler = SchedulerServer(replace(config, listen=self.scheduler.address))
        await self.scheduler.start()
        await asyncio.wait_for(_all_connected(self.scheduler, self.frontend, len(self.workers)),
                               READY_TIMEOUT_S)
        return self.scheduler

    @property
    def metrics_urls(self) -> dict[str, str]:
        """Each service's /metrics URL: "kvstore", "worker-<i>", "scheduler", "frontend"."""
        servers = {"kvstore": self.kvstore, "scheduler": self.scheduler, "frontend": self.frontend,
                   **{f"worker-{i}": worker for i, worker in enumerate(self.workers)}}
        return {name: server.metrics_server.url for name, server in servers.items()
                if server.metrics_server is not None}

    @property
    def kvstore_address(self) -> str:
        return f"127.0.0.1:{self.kvstore_port}"

    async def restart_kvstore(self) -> int:
        """Stop the kvstore and start a new one on the same Redis; returns its port."""
        await self.kvstore.stop(0)
        self.kvstore = KVStoreServer(self.kvstore_config)
        self.kvstore_port = await self.kvstore.start()
        return self.kvstore_port


@asynccontextmanager
async def local_stack(*, engine: EngineConfig, scheduler: SchedulerConfig, num_workers: int = 1,
                      redis_url: str | None = None, tenants: dict | None = None,
                      worker_drain_timeout_s: float = 5.0) -> AsyncIterator[LocalStack]:
    """Start everything, wait until the frontend is SERVING; stop everything on exit.

    `scheduler.workers` and `kvstore_addr` are filled in here; `tenants` (the tenants-file
    content) is written to a temporary file when given. The components share a fresh cluster
    token, merged into `scheduler.security` (which may carry TLS settings for every service).
    """
    security = replace(scheduler.security, cluster_token=secrets.token_urlsafe(32))
    # Every service serves /metrics on a port of its own (free now; a race with another
    # process only costs that service its metrics, see metrics_http).
    kvstore_config = KVStoreConfig(listen="127.0.0.1:0", redis_url=redis_url,
                                   metrics_port=free_port(), security=security)
    kvstore = KVStoreServer(kvstore_config)
    kv_port = await kvstore.start()
    kv_address = f"127.0.0.1:{kv_port}"
    workers: list[WorkerServer] = []
    scheduler_server: SchedulerServer | None = None
    frontend: FrontendServer | None = None
    stack: LocalStack | None = None
    with tempfile.TemporaryDirectory(prefix="fastswitch-") as tmp:
        try:
            for index in range(num_workers):
                worker = WorkerServer(WorkerConfig(
                    engine=engine, listen="127.0.0.1:0", worker_id=f"worker-{index}",
                    kvstore_addr=kv_address, drain_timeout_s=worker_drain_timeout_s,
                    metrics_port=free_port(), security=security))
                workers.append(worker)
                await worker.start()
            tenants_file = ""
            if tenants is not None:
                tenants_file = str(Path(tmp) / "tenants.json")
                Path(tenants_file).write_text(json.dumps(tenants))
            scheduler_server = SchedulerServer(replace(
                scheduler, workers=tuple(w.address for w in workers), kvstore_addr=kv_address,
                tenants_file=tenants_file or scheduler.tenants_file, metrics_port=free_port(),
                security=security))
            await scheduler_server.start()
            frontend = FrontendServer(FrontendConfig(
                listen="127.0.0.1:0", scheduler_addr=scheduler_server.address,
                frontend_name="frontend-0", model=engine.model,
                tenants_file=tenants_file or scheduler.tenants_file,
                allow_anonymous_admin=scheduler.allow_anonymous_admin, metrics_port=free_port(),
                security=security), is_http_port_ephemeral=True)
            await frontend.start()
            await asyncio.wait_for(_all_connected(scheduler_server, frontend, num_workers),
                                   READY_TIMEOUT_S)
            stack = LocalStack(kvstore, kvstore_config, security, kv_port, workers,
                               scheduler_server, frontend)
            yield stack
        finally:
            if frontend is not None:
                await frontend.stop(0)
            if stack is not None:
                scheduler_server = stack.scheduler  # the latest, after restarts
            if scheduler_server is not None:
                await scheduler_server.stop(0)
            for worker in workers:
                await worker.stop(0)
            await (stack.kvstore if stack is not None else kvstore).stop(0)


async def _all_connected(scheduler: SchedulerServer, frontend: FrontendServer,
                         num_workers: int) -> None:
    while (len(scheduler.core.ready_links()) < num_workers or not scheduler.is_serving
           or len(frontend.core.workers) < num_workers or not frontend.is_serving
           or frontend.core.frontend_id not in scheduler.core.frontends):
        await asyncio.sleep(0.02)
