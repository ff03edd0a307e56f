"""SchedulerConfig: the scheduler service's settings, validated; filled from CLI/env in main."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field

from fastswitch import transport

POLICIES = ("vtc", "fcfs", "priority", "trace")
DEFAULT_PORT = 50051


@dataclass(frozen=True)
class SchedulerConfig:
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    # Worker targets host:port; a name resolving to several addresses (a headless Service)
    # means one worker per address, re-resolved every discovery_interval_s.
    workers: tuple[str, ...] = ()
    discovery_interval_s: float = 5.0
    kvstore_addr: str = ""
    model: str = "tiny"  # for the tokenizer: a checkpoint directory (tokenizer.json) or preset
    policy: str = "vtc"
    tick_ms: float = 50.0
    tenants_file: str = ""  # JSON {"tokens": {token: tenant}, "weights": {...}, "admins": [...]}
    # VTC: weights of prompt and generated tokens, and the hysteresis (in virtual tokens) a
    # waiting tenant must lead a running one by before it is preempted.
    vtc_input_weight: float = 1.0
    vtc_output_weight: float = 2.0
    vtc_preempt_threshold: float = 64.0
    # trace: the paper's priority-change pattern and per-tick change probability.
    trace_pattern: str = "markov"
    trace_update_probability: float = 0.04
    trace_num_levels: int = 4
    trace_seed: int = 0
    # Admission control per worker.
    max_running_per_worker: int = 32
    kv_headroom_tokens: int = 32
    # Overload answers RESOURCE_EXHAUSTED: live requests (queued, running or preempted) in the
    # whole cluster, and per tenant.
    max_queued_requests: int = 10_000
    max_queued_per_tenant: int = 2_000
    # A request no worker can take (none connected, or every one lost) fails with UNAVAILABLE
    # after this long, however it came to be without one.
    unroutable_timeout_s: float = 30.0
    # Without a tenants file every caller is the anonymous tenant; admin calls (weights) stay
    # refused unless this is set.
    allow_anonymous_admin: bool = False
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.tick_ms <= 0:
            raise ValueError(f"tick_ms must be > 0, got {self.tick_ms}")
        if self.trace_pattern not in ("random", "markov"):
            raise ValueError(f"trace_pattern must be random or markov, got {self.trace_pattern!r}")
        if not 0 <= self.trace_update_probability <= 1:
            raise ValueError("trace_update_probability must be in [0, 1]")
        if min(self.max_running_per_worker, self.max_queued_requests, self.max_queued_per_tenant) <= 0:
            raise ValueError("max_running_per_worker, max_queued_requests and "
                             "max_queued_per_tenant must be > 0")
        if not 0 < self.unroutable_timeout_s < float("inf"):
            raise ValueError(f"unroutable_timeout_s must be > 0 and finite, got {self.unroutable_timeout_s}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--listen", default=env("FASTSWITCH_SCHEDULER_LISTEN", f"0.0.0.0:{DEFAULT_PORT}"))
    parser.add_argument("--workers", default=env("FASTSWITCH_WORKERS", ""),
                        help="comma-separated worker addresses host:port")
    parser.add_argument("--kvstore-addr", default=env("FASTSWITCH_KVSTORE_ADDR", ""))
    parser.add_argument("--model", default=env("FASTSWITCH_MODEL", "tiny"))
    parser.add_argument("--policy", default=env("FASTSWITCH_POLICY", "vtc"), choices=POLICIES)
    parser.add_argument("--tick-ms", type=float, default=float(env("FASTSWITCH_TICK_MS", "50")))
    parser.add_argument("--tenants-file", default=env("FASTSWITCH_TENANTS_FILE", ""))
    parser.add_argument("--vtc-preempt-threshold", type=float, default=64.0)
    parser.add_argument("--trace-pattern", default="markov", choices=["random", "markov"])
    parser.add_argument("--trace-update-probability", type=float, default=0.04)
    parser.add_argument("--trace-seed", type=int, default=0)
    parser.add_argument("--max-running-per-worker", type=int, default=32)
    parser.add_argument("--max-queued-requests", type=int,
                        default=int(env("FASTSWITCH_MAX_QUEUED_REQUESTS", "10000")),
                        help="live requests in the cluster before new ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-queued-per-tenant", type=int,
                        default=int(env("FASTSWITCH_MAX_QUEUED_PER_TENANT", "2000")),
                        help="live requests of one tenant before its new ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--unroutable-timeout-s", type=float,
                        default=float(env("FASTSWITCH_UNROUTABLE_TIMEOUT_S", "30")),
                        help="a request no worker can take fails with UNAVAILABLE after this long")
    parser.add_argument("--allow-anonymous-admin", action="store_true",
                        default=env("FASTSWITCH_ALLOW_ANONYMOUS_ADMIN", "") in ("1", "true"),
                        help="without a tenants file, let every caller make admin calls")
    parser.add_argument("--log-level", default=env("FASTSWITCH_LOG_LEVEL", "info"))
    transport.add_arguments(parser)


def from_args(args: argparse.Namespace) -> SchedulerConfig:
    workers = tuple(w.strip() for w in args.workers.split(",") if w.strip())
    return SchedulerConfig(
        listen=args.listen, workers=workers, kvstore_addr=args.kvstore_addr, model=args.model,
        policy=args.policy, tick_ms=args.tick_ms, tenants_file=args.tenants_file,
        vtc_preempt_threshold=args.vtc_preempt_threshold, trace_pattern=args.trace_pattern,
        trace_update_probability=args.trace_update_probability, trace_seed=args.trace_seed,
        max_running_per_worker=args.max_running_per_worker,
        max_queued_requests=args.max_queued_requests, max_queued_per_tenant=args.max_queued_per_tenant,
        unroutable_timeout_s=args.unroutable_timeout_s, allow_anonymous_admin=args.allow_anonymous_admin,
        security=transport.from_args(args), log_level=args.log_level)
