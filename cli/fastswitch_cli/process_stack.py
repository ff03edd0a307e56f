"""The whole stack as local processes on 127.0.0.1, started the way containers start them
(`fastswitch kvstore | worker | scheduler`), for `fastswitch up` and `fastswitch bench`.

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
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch import transport
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0


class StackError(RuntimeError):
    """A service did not come up; the message names its log file."""


@dataclass(frozen=True)
class ProcessStack:
    scheduler_address: str
    kvstore_address: str
    worker_addresses: tuple[str, ...]
    log_dir: Path
    cluster_token: str  # the credential workers and the kvstore ask of their callers
    pids: dict[str, int]  # service name ("kvstore", "worker-0", "scheduler") -> process id


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def engine_args(engine: EngineConfig) -> list[str]:
    args = ["--model", engine.model, "--load-format", engine.load_format, "--dtype", engine.dtype,
            "--device", engine.device, "--mode", engine.mode.value,
            "--block-size", str(engine.block_size), "--host-swap-bytes", str(engine.host_kv_bytes),
            "--kv-memory-fraction", str(engine.gpu_memory_fraction),
            "--max-num-batched-tokens", str(engine.max_num_batched_tokens),
            "--max-num-seqs", str(engine.max_num_seqs), "--seed", str(engine.seed)]
    if engine.kv_cache_bytes is not None:
        args += ["--kv-cache-bytes", str(engine.kv_cache_bytes)]
    if engine.num_compute_threads is not None:
        args += ["--compute-threads", str(engine.num_compute_threads)]
    return args


def scheduler_args(config: SchedulerConfig) -> list[str]:
    return ["--model", config.model, "--policy", config.policy, "--tick-ms", str(config.tick_ms),
            "--vtc-preempt-threshold", str(config.vtc_preempt_threshold),
            "--trace-pattern", config.trace_pattern,
            "--trace-update-probability", str(config.trace_update_probability),
            "--trace-seed", str(config.trace_seed),
            "--max-running-per-worker", str(config.max_running_per_worker),
            "--max-queued-requests", str(config.max_queued_requests),
            "--max-queued-per-tenant", str(config.max_queued_per_tenant),
            "--unroutable-timeout-s", str(config.unroutable_timeout_s),
            *(["--allow-anonymous-admin"] if config.allow_anonymous_admin else [])]


@contextlib.contextmanager
def process_stack(*, engine: EngineConfig, scheduler: SchedulerConfig, log_dir: Path,
                  num_workers: int = 1, scheduler_port: int | None = None,
                  redis_url: str | None = None, tenants: dict | None = None,
                  log_level: str = "info",
                  security: transport.TransportSecurity | None = None) -> Iterator[ProcessStack]:
    """Start kvstore, workers and scheduler; yield once the scheduler is SERVING; on exit
    stop them in reverse order (SIGTERM: workers drain), killing what does not stop.

    The services share a cluster token (`security`'s, else a fresh one), passed in their
    environment, not on a command line other local users can read; `security`'s TLS files
    apply to every service and to the calls between them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    processes: list[tuple[str, subprocess.Popen]] = []
    security = security or transport.TransportSecurity()
    cluster_token = security.cluster_token or secrets.token_urlsafe(32)
    environment = {**os.environ, transport.CLUSTER_TOKEN_ENV: cluster_token}
    for inherited in ("FASTSWITCH_CLUSTER_TOKEN_FILE", "FASTSWITCH_REDIS_URL", "REDIS_URL"):
        environment.pop(inherited, None)  # this stack's own settings only

    def start(name: str, *args: str, extra_env: dict[str, str] | None = None) -> None:
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        command = [sys.executable, "-m", "fastswitch_cli.main", *args, "--log-level", log_level,
                   *transport.to_args(security)]
        processes.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                 env={**environment, **(extra_env or {})})))

    try:
        kvstore_address = f"127.0.0.1:{free_port()}"
        start("kvstore", "kvstore", "--listen", kvstore_address,
              # In the environment: a URL may carry a password, and `ps` shows command lines.
              extra_env={"FASTSWITCH_REDIS_URL": redis_url} if redis_url else None)
        worker_addresses = tuple(f"127.0.0.1:{free_port()}" for _ in range(num_workers))
        for index, address in enumerate(worker_addresses):
            start(f"worker-{index}", "worker", "--listen", address, "--worker-id", f"worker-{index}",
                  "--kvstore-addr", kvstore_address, *engine_args(engine))
        tenants_args: list[str] = []
        if tenants is not None:
            tenants_file = log_dir / "tenants.json"
            tenants_file.write_text(json.dumps(tenants))
            tenants_args = ["--tenants-file", str(tenants_file)]
        for name, address in [("kvstore", kvstore_address),
                              *((f"worker-{i}", a) for i, a in enumerate(worker_addresses))]:
            wait_serving(name, address, processes, log_dir, security)
        scheduler_address = f"127.0.0.1:{scheduler_port or free_port()}"
        start("scheduler", "scheduler", "--listen", scheduler_address,
              "--workers", ",".join(worker_addresses), "--kvstore-addr", kvstore_address,
              *scheduler_args(scheduler), *tenants_args)
        wait_serving("scheduler", scheduler_address, processes, log_dir, security)
        yield ProcessStack(scheduler_address, kvstore_address, worker_addresses, log_dir,
                           cluster_token, {name: process.pid for name, process in processes})
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
