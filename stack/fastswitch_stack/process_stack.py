"""The whole stack as local processes on 127.0.0.1, started the way containers start them
(`fastswitch kvstore | worker | scheduler | frontend` with the flags of each service's config), for
`fastswitch up`, `fastswitch bench`, the benchmarks and the fault-injection tests.

Each service gets its own interpreter, so the engine, the scheduler's event loop and the
clients never share a GIL. Logs go to one file per service under `log_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch import settings, transport
from fastswitch_frontend.config import FrontendConfig
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.service.config import WorkerConfig

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """A service did not come up; the message names its log file."""


ServiceConfig = KVStoreConfig | WorkerConfig | SchedulerConfig | FrontendConfig


@dataclass(frozen=True)
class ProcessStack:
    address: str  # the client API: the first frontend's
    frontend_addresses: tuple[str, ...]
    scheduler_address: str  # the control plane (frontends only)
    kvstore_address: str
    worker_addresses: tuple[str, ...]
    log_dir: Path
    cluster_token: str  # the credential workers and the kvstore ask of their callers
    pids: dict[str, int]  # service name ("kvstore", "worker-0", "scheduler", "frontend-0") -> pid
    metrics_urls: dict[str, str]  # service name -> its Prometheus /metrics URL
    # Each frontend's OpenAI-compatible API (`http[s]://127.0.0.1:PORT/v1`); () when it is off.
    http_urls: tuple[str, ...] = ()

    @property
    def http_url(self) -> str | None:
        """The first frontend's OpenAI-compatible API."""
        return self.http_urls[0] if self.http_urls else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_command(service: str, config: ServiceConfig) -> tuple[list[str], dict[str, str]]:
    """(command line, environment) that start `fastswitch <service>` with exactly `config`:
    its settings as flags, its secrets (cluster token, Redis URL) in the environment, where
    `ps` does not show them, and none of this process's own FASTSWITCH_* settings."""
    command = [sys.executable, "-m", "fastswitch_cli.main", service, *settings.to_args(config)]
    read = set().union(*(settings.env_names(c) for c in (KVStoreConfig, WorkerConfig,
                                                          SchedulerConfig, FrontendConfig)))
    inherited = {name: value for name, value in os.environ.items() if name not in read}
    return command, {**inherited, **settings.to_env(config)}


@contextlib.contextmanager
def process_stack(*, engine: EngineConfig, scheduler: SchedulerConfig, log_dir: Path,
                  num_workers: int = 1, port: int | None = None, num_frontends: int = 1,
                  http_port: int | None = None,
                  redis_url: str | None = None, tenants: dict | None = None,
                  log_level: str = "info",
                  security: transport.TransportSecurity | None = None,
                  worker: WorkerConfig | None = None) -> Iterator[ProcessStack]:
    """Start kvstore, workers, scheduler and frontends; yield once every frontend is SERVING
    (the first one on `port`, the client API; frontend i serves the HTTP API on `http_port` + i,
    on free ports when `http_port` is None, not at all when it is 0); on exit stop them in
    reverse order (SIGTERM: workers drain), killing what does not stop.

    `scheduler`'s addresses (listen, workers, kvstore) are filled in here, and the tenants
    file (the scheduler's and the frontends') when `tenants` (the file's content) is given. The services share a cluster token
    (`security`'s, else a fresh one); `security`'s TLS files apply to every service and to the
    calls between them. Raises ValueError for settings a service would refuse."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[tuple[str, subprocess.Popen]] = []
    metrics_ports: dict[str, int] = {}  # service name -> its /metrics port
    security = security or transport.TransportSecurity()
    security = replace(security, cluster_token=security.cluster_token or secrets.token_urlsafe(32))

    def start(name: str, service: str, config: ServiceConfig) -> None:
        # Every service serves /metrics on a free port of its own.
        config = replace(config, metrics_port=free_port())
        metrics_ports[name] = config.metrics_port
        command, environment = service_command(service, config)
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        processes.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                 env=environment)))

    try:
        kvstore_address = f"127.0.0.1:{free_port()}"
        start("kvstore", "kvstore", KVStoreConfig(listen=kvstore_address, redis_url=redis_url,
                                                  log_level=log_level, security=security))
        worker_addresses = tuple(f"127.0.0.1:{free_port()}" for _ in range(num_workers))
        for index, address in enumerate(worker_addresses):
            # `worker`: the workers' own settings (simulation, progress interval...), if any.
            start(f"worker-{index}", "worker", replace(
                worker or WorkerConfig(), engine=engine, listen=address, worker_id=f"worker-{index}",
                kvstore_addr=kvstore_address, log_level=log_level, security=security))
        tenants_file = scheduler.tenants_file
        if tenants is not None:
            tenants_file = str(log_dir / "tenants.json")
            Path(tenants_file).write_text(json.dumps(tenants))
        for name, address in [("kvstore", kvstore_address),
                              *((f"worker-{i}", a) for i, a in enumerate(worker_addresses))]:
            wait_serving(name, address, processes, log_dir, security)
        scheduler_address = f"127.0.0.1:{free_port()}"
        start("scheduler", "scheduler", replace(
            scheduler, listen=scheduler_address, workers=worker_addresses,
            kvstore_addr=kvstore_address, tenants_file=tenants_file, log_level=log_level,
            security=security))
        frontend_addresses = tuple(f"127.0.0.1:{(port if i == 0 and port else free_port())}"
                                   for i in range(num_frontends))
        http_ports = tuple(free_port() if http_port is None else http_port and http_port + i
                           for i in range(num_frontends))
        for index, address in enumerate(frontend_addresses):
            start(f"frontend-{index}", "frontend", FrontendConfig(
                http_port=http_ports[index],
                listen=address, scheduler_addr=scheduler_address, frontend_name=f"frontend-{index}",
                model=engine.model, tenants_file=tenants_file,
                allow_anonymous_admin=scheduler.allow_anonymous_admin, log_level=log_level,
                security=security))
        wait_serving("scheduler", scheduler_address, processes, log_dir, security)
        for index, address in enumerate(frontend_addresses):
            wait_serving(f"frontend-{index}", address, processes, log_dir, security)
        yield ProcessStack(frontend_addresses[0], frontend_addresses, scheduler_address,
                           kvstore_address, worker_addresses, log_dir, security.cluster_token,
                           {name: process.pid for name, process in processes},
                           {name: f"http://127.0.0.1:{port}/metrics"
                            for name, port in metrics_ports.items()},
                           tuple(f"{'https' if security.serves_tls else 'http'}://127.0.0.1:{p}/v1"
                                 for p in http_ports if p))
    finally:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def first_error(log_file: Path) -> str | None:
    """The first error a service logged (its JSON lines' `msg`), to show instead of a path."""
    try:
        lines = log_file.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("level") in ("error", "critical"):
            return str(record.get("msg", ""))[:500]
    return None


def wait_serving(name: str, address: str, processes: list[tuple[str, subprocess.Popen]],
                 log_dir: Path, security: transport.TransportSecurity) -> None:
    """Poll grpc.health.v1 until SERVING; fail fast when the process died."""
    process = dict(processes)[name]
    deadline = time.monotonic() + READY_TIMEOUT_S
    with transport.sync_channel(address, security) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                reason = first_error(log_dir / f"{name}.log")
                raise StackError(f"{name} exited with {process.returncode}"
                                 f"{': ' + reason if reason else ''}; see {log_dir / name}.log")
            with contextlib.suppress(grpc.RpcError):
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise StackError(f"{name} not SERVING after {READY_TIMEOUT_S:.0f} s; see {log_dir / name}.log")
