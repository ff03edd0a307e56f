"""SchedulerConfig: the scheduler service's settings, each declared once (flag, environment
variable, default, help: fastswitch.settings); filled from CLI/env in main only."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastswitch import logs, transport
from fastswitch.metrics_http import check_metrics_port, metrics_port_setting
from fastswitch.settings import setting

POLICIES = ("vtc", "fcfs", "priority", "trace")
TRACE_PATTERNS = ("random", "markov")
DEFAULT_PORT = 50052
DEFAULT_METRICS_PORT = 9401  # frontend 9400, scheduler 9401, worker 9402, kvstore 9403
# A request waits for the next tick to be admitted (half a tick on average), and a tick with
# 1,000 queued requests costs 0.2-0.8 ms of scheduler CPU (benchmarks/results/
# scheduler_tick_cpu.json). 20 ms adds at most 20 ms to time-to-first-token and keeps the tick
# under 5% of a core; it is also the tick the published benchmark results used, so the trace
# policy's change probability (per tick) means what it meant there.
DEFAULT_TICK_MS = 20.0


@dataclass(frozen=True)
class SchedulerConfig:
    listen: str = setting(f"0.0.0.0:{DEFAULT_PORT}", env="FASTSWITCH_SCHEDULER_LISTEN",
                          metavar="HOST:PORT", help=(
                              "gRPC address the frontends call (fastswitch.v1.Control; the "
                              "cluster token is required)"))
    workers: tuple[str, ...] = setting((), metavar="HOST:PORT,...", help=(
        "worker addresses, comma-separated; a name resolving to several addresses (a headless "
        "Service) means one worker per address, resolved again every --discovery-interval-s"))
    discovery_interval_s: float = setting(5.0, help="seconds between resolutions of --workers")
    kvstore_addr: str = setting("", metavar="HOST:PORT", help=(
        "the kvstore, to route a conversation's next turn to the worker holding its KV "
        "(none: least-loaded routing only)"))
    policy: str = setting("vtc", choices=POLICIES, help=(
        "who runs: vtc (fair share of tokens by tenant weight), fcfs, priority (the clients'), "
        "trace (the FastSwitch paper's changing priorities)"))
    tick_ms: float = setting(DEFAULT_TICK_MS, help=(
        "milliseconds between scheduling decisions; a new request waits for the next one"))
    tenants_file: str = setting("", metavar="FILE", help=(
        'JSON {"tokens": {token: tenant}, "weights": {tenant: weight}, "admins": [tenant]}, the '
        "frontends' file: the tenants' weights and admins; without it every caller is the "
        "anonymous tenant"))
    # VTC: weights of prompt and generated tokens, and the rule that preempts only where the
    # fairness bound needs it (policy_vtc.py states the bound these settle).
    vtc_input_weight: float = setting(1.0, help="vtc: virtual cost of one prompt token")
    vtc_output_weight: float = setting(2.0, help="vtc: virtual cost of one generated token")
    # 1,024: the gap a switch buys is ~2x this, so switches stay rare (64 cost 7-10 swap-outs
    # per second and an 18x p99 TBT on the tiny model) while 5 s windows stay fair.
    vtc_preempt_threshold: float = setting(1024.0, help=(
        "vtc: virtual tokens a waiting tenant must lead a running one by to preempt it (the "
        "hysteresis H; the fairness bound grows with it, switches fall as 1/H)"))
    vtc_quantum: float = setting(128.0, help=(
        "vtc: virtual tokens a tenant is served after one of its requests (re)starts before "
        "that request may be preempted for fairness (capped at --vtc-preempt-threshold)"))
    vtc_finish_guard_tokens: int = setting(8, help=(
        "vtc: a request with at most this many tokens left to generate is not preempted for "
        "fairness (it frees its slot soon anyway)"))
    # Counters of every policy: a tenant whose last request ended less than this long ago is
    # not lifted when its next one arrives (a closed-loop client's resubmission gap).
    tenant_idle_grace_s: float = setting(1.5, help=(
        "a tenant with no live request for longer than this is idle: its next request lifts "
        "its counter to the least-served active tenant's; a shorter gap keeps what it is owed"))
    # trace: the paper's priority-change pattern and per-iteration change probability.
    trace_pattern: str = setting("markov", choices=TRACE_PATTERNS,
                                 help="trace: how priorities change (the paper's patterns)")
    trace_update_probability: float = setting(0.04, help=(
        "trace: probability that a request's priority changes at each engine iteration (a "
        "step that ran the model, as in the paper: 0.04 for its 8B runs); the scheduler "
        "applies the changes at its next tick"))
    trace_num_levels: int = setting(4, help="trace: number of priority levels")
    trace_seed: int = setting(0, help="trace: seed of the priority changes")
    # Admission control per worker.
    max_running_per_worker: int = setting(32, help="requests a worker runs at once, at most")
    kv_headroom_tokens: int = setting(32, help=(
        "KV tokens kept free per running request when packing a worker, so it can decode "
        "until the next tick"))
    # Admit at a lower watermark than the one that evicts: a tight worker is not filled only
    # for its requests to outgrow it a moment later (a swap-out, a refill, and so on).
    kv_admit_headroom_tokens: int = setting(128, help=(
        "a request starts on a worker only if every request there (and it) has room for this "
        "many more tokens each (or what it has left to generate, if less); at least "
        "--kv-headroom-tokens"))
    # Overload answers RESOURCE_EXHAUSTED: live requests (queued, running or preempted) in the
    # whole cluster, and per tenant.
    max_queued_requests: int = setting(10_000, help=(
        "live requests in the cluster before new ones get RESOURCE_EXHAUSTED"))
    max_queued_per_tenant: int = setting(2_000, help=(
        "live requests of one tenant before its new ones get RESOURCE_EXHAUSTED"))
    # A request no worker can take (none connected, or every one lost) fails with UNAVAILABLE
    # after this long, however it came to be without one.
    unroutable_timeout_s: float = setting(30.0, help=(
        "a request no worker can take fails with UNAVAILABLE after this many seconds"))
    # Without a tenants file every caller is the anonymous tenant; admin calls (weights) stay
    # refused unless this is set.
    allow_anonymous_admin: bool = setting(False, help=(
        "without a tenants file, let every caller make admin calls"))
    metrics_port: int = metrics_port_setting(DEFAULT_METRICS_PORT)
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = logs.level_setting()

    def __post_init__(self) -> None:
        check_metrics_port(self.metrics_port)
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.tick_ms <= 0:
            raise ValueError(f"tick_ms must be > 0, got {self.tick_ms}")
        if self.trace_pattern not in TRACE_PATTERNS:
            raise ValueError(f"trace_pattern must be random or markov, got {self.trace_pattern!r}")
        if not 0 <= self.trace_update_probability <= 1:
            raise ValueError("trace_update_probability must be in [0, 1]")
        if min(self.kv_headroom_tokens, self.kv_admit_headroom_tokens) < 0:
            raise ValueError("kv_headroom_tokens and kv_admit_headroom_tokens must be >= 0")
        if min(self.max_running_per_worker, self.max_queued_requests, self.max_queued_per_tenant) <= 0:
            raise ValueError("max_running_per_worker, max_queued_requests and "
                             "max_queued_per_tenant must be > 0")
        if not (0 <= self.vtc_quantum < float("inf") and 0 <= self.vtc_preempt_threshold < float("inf")):
            raise ValueError("vtc_quantum and vtc_preempt_threshold must be >= 0 and finite, got "
                             f"{self.vtc_quantum} and {self.vtc_preempt_threshold}")
        if self.vtc_finish_guard_tokens < 0 or not 0 <= self.tenant_idle_grace_s < float("inf"):
            raise ValueError("vtc_finish_guard_tokens and tenant_idle_grace_s must be >= 0")
        if not 0 < self.unroutable_timeout_s < float("inf"):
            raise ValueError(f"unroutable_timeout_s must be > 0 and finite, got {self.unroutable_timeout_s}")
