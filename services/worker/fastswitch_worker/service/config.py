"""WorkerConfig: the worker service's settings, each declared once (flag, environment variable,
default, help: fastswitch.settings), the engine's included; filled from CLI/env in main only."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from fastswitch import logs, transport
from fastswitch.metrics_http import check_metrics_port, metrics_port_setting
from fastswitch.settings import setting
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig

DEFAULT_PORT = 50061
DEFAULT_METRICS_PORT = 9402  # frontend 9400, scheduler 9401, worker 9402, kvstore 9403
# Longer than any one engine step takes (a long prefill on CPU included), so liveness fails only
# for a loop that is stuck or dead.
DEFAULT_LIVENESS_TIMEOUT_S = 120.0
# Two scheduler ticks (20 ms): a GPU step takes 5-30 ms, so 2-8 steps per message.
DEFAULT_PROGRESS_INTERVAL_MS = 40.0


@dataclass(frozen=True)
class WorkerConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    # No model: the engine's bookkeeping with modelled step and copy times (engine/simulated.py),
    # so a benchmark runs tens of workers' real protocol on a few cores.
    simulate: bool = setting(False, help=(
        "run a simulated engine instead of the model: the real protocol and request "
        "bookkeeping, steps and copies that take modelled time (--simulated-*); the engine's "
        "batching and block settings apply, its model, device and memory settings do not"))
    simulation: SimulatedEngineConfig = field(default_factory=SimulatedEngineConfig)
    listen: str = setting(f"0.0.0.0:{DEFAULT_PORT}", env="FASTSWITCH_WORKER_LISTEN",
                          metavar="HOST:PORT", help="gRPC address the scheduler calls")
    worker_id: str = setting(default_factory=socket.gethostname, default_text="the host name",
                             help="this worker's name (Kubernetes: the pod's name)")
    # Address other components use to reach this worker (published to the kvstore).
    advertise_address: str = setting("", metavar="HOST:PORT", help=(
        "the address other components reach this worker at, published to the kvstore"))
    kvstore_addr: str = setting("", metavar="HOST:PORT", help=(
        "the kvstore, where a finished turn's reusable KV is published (none: not published)"))
    drain_timeout_s: float = setting(30.0, help=(
        "after SIGTERM, seconds running requests may take to finish before they are handed "
        "back to the scheduler"))
    # Liveness (grpc.health.v1 service LIVENESS_SERVICE) fails when the engine thread has not
    # beaten its heartbeat for this long.
    liveness_timeout_s: float = setting(DEFAULT_LIVENESS_TIMEOUT_S, help=(
        "report the grpc.health.v1 service 'fastswitch.liveness' NOT_SERVING once the engine "
        "loop has made no progress for this many seconds (stuck or dead); keep it above the "
        "longest step, e.g. a long prefill on CPU"))
    # The scheduler hears the steps' counts coalesced over this interval (failures, the
    # worker's own preemptions and draining at once): fewer messages for it to read, at the
    # price of seeing a finished request's slot free up to one interval late.
    progress_interval_ms: float = setting(DEFAULT_PROGRESS_INTERVAL_MS, help=(
        "milliseconds over which step counts are coalesced into one message to the scheduler "
        "(0: one message per step)"))
    metrics_port: int = metrics_port_setting(DEFAULT_METRICS_PORT)
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = logs.level_setting()

    def __post_init__(self) -> None:
        check_metrics_port(self.metrics_port)
        if not 0 <= self.progress_interval_ms <= 1000:
            raise ValueError(f"progress_interval_ms must be in [0, 1000], got {self.progress_interval_ms}")
        if not self.worker_id:
            raise ValueError("worker_id must not be empty")
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout_s must be >= 0")
        if not self.liveness_timeout_s > 0:
            raise ValueError("liveness_timeout_s must be > 0")
