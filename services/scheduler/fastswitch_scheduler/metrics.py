"""The scheduler's Prometheus metrics: the cluster's queue, fairness per tenant, preemptions.

Everything is read from the scheduler's live state at scrape time by one collector (the request
table, the tenants' counters, the workers' links): the tick and the event handling count
nothing for it, except the core's one tally of the preemptions it commands
(`SchedulerCore.preemption_counts`). The cluster-wide `vllm:num_requests_waiting` is what an
autoscaler (KEDA) divides by the number of workers.

Jain's fairness index needs service over time, which no table keeps: a sampler records each
tenant's weighted service once a second into a `JainWindow` (pure, unit-tested).

Asyncio loop only, like the core; the metrics server runs on the same loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from fastswitch_scheduler.requests import Phase

if TYPE_CHECKING:
    from fastswitch_scheduler.core import SchedulerCore

JAIN_WINDOW_S = 30.0
SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class _Sample:
    at_s: float
    service: dict[str, float]  # tenant -> cumulative weighted service (virtual tokens served)
    backlogged: frozenset[str]  # tenants with live requests at that moment


class JainWindow:
    """Jain's fairness index over the last `window_s` seconds:
    J = (sum x)^2 / (n * sum x^2), x_i the weighted service (tokens / weight) tenant i got in
    the window, over the n tenants backlogged (holding live requests) at some sample in it.
    1 is perfectly fair; 1/n means one tenant got everything. Pure; times are passed in."""

    def __init__(self, window_s: float = JAIN_WINDOW_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._samples: collections.deque[_Sample] = collections.deque()

    def record(self, now_s: float, service: Mapping[str, float], backlogged: Iterable[str]) -> None:
        """Mutates: one sample of every tenant's cumulative weighted service. Keeps the
        newest sample at or before the window's start as the base the window measures from."""
        self._samples.append(_Sample(now_s, dict(service), frozenset(backlogged)))
        while len(self._samples) >= 2 and self._samples[1].at_s <= now_s - self.window_s:
            self._samples.popleft()

    def service_in_window(self) -> dict[str, float]:
        """Weighted service of each backlogged tenant between the base and the newest sample;
        {} with fewer than two samples."""
        if len(self._samples) < 2:
            return {}
        base, latest = self._samples[0], self._samples[-1]
        tenants = set().union(*(sample.backlogged for sample in self._samples))
        return {t: latest.service.get(t, 0.0) - base.service.get(t, 0.0) for t in tenants}

    def index(self) -> float | None:
        """Jain's index now, or None when no tenant was backlogged in the window (or fewer than
        two samples were taken). Tenants backlogged but served nothing count as zeros; when
        nobody was served at all, every tenant got the same (nothing): 1."""
        served = self.service_in_window()
        if not served:
            return None
        total = sum(served.values())
        squares = sum(x * x for x in served.values())
        if squares == 0:
            return 1.0
        return total * total / (len(served) * squares)


class SchedulerMetrics:
    """The scheduler's registry (served at /metrics) and the sampler behind the Jain index."""

    def __init__(self, core: SchedulerCore, *, window_s: float = JAIN_WINDOW_S,
                 sample_interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.core = core
        self.window = JainWindow(window_s)
        self.sample_interval_s = sample_interval_s
        self.registry = CollectorRegistry()
        self.registry.register(_SchedulerCollector(self))
        self._cost: dict[str, float] = {}  # tenant -> virtual cost seen at the last sample
        self._service: dict[str, float] = collections.defaultdict(float)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._sample_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample_forever(self) -> None:
        while True:
            self.sample(asyncio.get_running_loop().time())
            await asyncio.sleep(self.sample_interval_s)

    def sample(self, now_s: float) -> None:
        """Mutates: adds each tenant's service since the last sample, divided by its weight
        now (so a weight change applies from then on), and records a window sample. Backlogged:
        the tenants with live requests now, and those served since the last sample (a burst
        shorter than the interval still counts)."""
        registry = self.core.tenants
        backlogged = set(self.core.requests.tenant_names())
        for tenant in registry.tenants.values():
            cost = (registry.input_weight * tenant.num_served_prompt_tokens
                    + registry.output_weight * tenant.num_served_generated_tokens)
            served = cost - self._cost.get(tenant.name, 0.0)
            if served > 0:
                backlogged.add(tenant.name)
            self._service[tenant.name] += served / tenant.weight
            self._cost[tenant.name] = cost
        self.window.record(now_s, self._service, backlogged)


class _SchedulerCollector(Collector):
    def __init__(self, metrics: SchedulerMetrics) -> None:
        self.metrics = metrics
        # Served prompt tokens go down when a turn's reused prefix is refunded; a counter must
        # not: export the highest value seen (the refund shows once new service passes it).
        self._served_high: dict[tuple[str, str], int] = {}

    def collect(self):
        core = self.metrics.core
        model = next((link.hello.model for link in core.ready_links() if link.hello), "")
        running: collections.Counter[str] = collections.Counter()
        waiting: collections.Counter[str] = collections.Counter()
        for request in core.requests.values():
            phases = running if request.phase is Phase.RUNNING else waiting
            phases[request.tenant.name] += 1
        yield _gauge("vllm:num_requests_running", "Requests the scheduler has running on "
                     "workers (admitted or resumed).", {("model_name", model): running.total()})
        yield _gauge("vllm:num_requests_waiting", "Requests in the cluster not running now: "
                     "queued for a slot or preempted (what autoscaling reads).",
                     {("model_name", model): waiting.total()})
        tenants = core.tenants.tenants.values()
        yield _gauge("fastswitch:tenant_requests_running", "Running requests per tenant.",
                     {("tenant", t.name): running[t.name] for t in tenants})
        yield _gauge("fastswitch:tenant_requests_waiting", "Queue depth per tenant: requests "
                     "queued or preempted.", {("tenant", t.name): waiting[t.name] for t in tenants})
        yield _gauge("fastswitch:tenant_virtual_tokens", "VTC counter per tenant: weighted "
                     "tokens served / weight (lifted when a tenant becomes active).",
                     {("tenant", t.name): t.virtual_tokens for t in tenants})
        yield _gauge("fastswitch:tenant_weight", "Fair-share weight per tenant.",
                     {("tenant", t.name): t.weight for t in tenants})
        served = CounterMetricFamily("fastswitch:tenant_served_tokens", "Tokens served per "
                                     "tenant, as workers report them (kind: prompt, generated).",
                                     labels=["tenant", "kind"])
        for tenant in tenants:
            for kind, value in (("prompt", tenant.num_served_prompt_tokens),
                                ("generated", tenant.num_served_generated_tokens)):
                key = (tenant.name, kind)
                self._served_high[key] = max(self._served_high.get(key, 0), value)
                served.add_metric(list(key), self._served_high[key])
        yield served
        preemptions = CounterMetricFamily("fastswitch:preemptions", "Preemptions by reason: the "
                                          "scheduler's policy (here) or the worker's own "
                                          "(kv_exhausted, on the workers).", labels=["reason"])
        for reason, count in sorted(core.preemption_counts.items()):
            preemptions.add_metric([reason], count)
        yield preemptions
        index = self.metrics.window.index()
        if index is not None:
            yield _gauge("fastswitch:jain_fairness_index", "Jain's index of the weighted "
                         f"service of backlogged tenants over the last "
                         f"{self.metrics.window.window_s:g} s (1 = fair, 1/n = one tenant "
                         "got all).", {None: index})
        yield _gauge("fastswitch:jain_backlogged_tenants", "Tenants with live requests in the "
                     "Jain window.", {None: len(self.metrics.window.service_in_window())})
        yield _gauge("fastswitch:workers_ready", "Workers with an open session.",
                     {None: len(core.ready_links())})
        ticks = CounterMetricFamily("fastswitch:scheduler_ticks", "Scheduling decisions made.")
        ticks.add_metric([], core.num_ticks)
        yield ticks


def _gauge(name: str, documentation: str, values: Mapping) -> GaugeMetricFamily:
    """A gauge with at most one label: {(label, value): sample} or {None: sample}."""
    labels = [key[0] for key in values if key is not None][:1]
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values.items():
        family.add_metric([] if key is None else [key[1]], value)
    return family
