"""The worker's Prometheus metrics: the engine's figures, read at scrape time.

Nothing in the engine counts for Prometheus: one collector reads what the engine keeps anyway
(SwapCounters, the copy executors' per-direction CopyTotals with their latency buckets) and the
snapshot the engine thread publishes after every step (`WorkerService.latest_stats`: KV
capacity, request counts). The engine runs on its own thread; these reads are of plain numbers
(and a copied list), which is safe without a lock: a scrape may see one counter a step ahead
of another, never a torn value. vLLM's names where the meaning is the same, `fastswitch:` for
the switch cost, the host pool and KV reuse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from fastswitch_worker.engine.kv_manager import SwapDirection
from fastswitch_worker.engine.outputs import COPY_LATENCY_BUCKETS_S

if TYPE_CHECKING:
    from fastswitch_worker.service.worker_service import WorkerService

DIRECTIONS = {SwapDirection.OUT: "out", SwapDirection.IN: "in"}  # GPU -> host, host -> GPU


class WorkerMetrics:
    """One worker's registry (served at /metrics)."""

    def __init__(self, service: WorkerService) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_WorkerCollector(service))


class _WorkerCollector(Collector):
    def __init__(self, service: WorkerService) -> None:
        self.service = service

    def collect(self):
        service = self.service
        model = service.config.engine.model
        stats = service.latest_stats  # replaced (never mutated) by the asyncio loop
        yield _gauge("vllm:num_requests_running", "Requests in the engine's batch.",
                     model, stats.num_running_requests)
        yield _gauge("vllm:num_requests_waiting", "Requests admitted to this engine waiting "
                     "for batch room.", model, stats.num_waiting_requests)
        yield _gauge("vllm:num_requests_swapped", "Preempted requests whose KV is in host "
                     "memory (or on its way).", model, stats.num_swapped_requests)
        capacity = stats.capacity
        if capacity.num_gpu_blocks:
            used = capacity.num_gpu_blocks - capacity.num_free_gpu_blocks
            yield _gauge("vllm:kv_cache_usage_perc", "Fraction of GPU KV blocks in use "
                         "(1 = full).", model, used / capacity.num_gpu_blocks)
            yield _gauge("fastswitch:kv_mean_extents_per_request", "Contiguous GPU extents per "
                         "running request (1 = one copy per swap; block groups keep it low).",
                         None, capacity.mean_extents_per_request)
        block_bytes = capacity.kv_bytes_per_token * capacity.block_size
        host_used = capacity.num_host_blocks - capacity.num_free_host_blocks
        yield _gauge("fastswitch:host_kv_pool_used_bytes", "Host (pinned) KV pool in use: "
                     "swapped-out requests and reusable conversation KV.", None,
                     host_used * block_bytes)
        yield _gauge("fastswitch:host_kv_pool_capacity_bytes", "Host KV pool size.", None,
                     capacity.num_host_blocks * block_bytes)
        engine = service.engine_loop.engine
        if engine is None:
            return  # still loading: no counters yet
        yield from _engine_families(engine, model)


def _engine_families(engine, model: str):
    counters = engine.counters
    yield _counter("vllm:num_preemptions", "Preemptions this engine carried out (KV copied "
                   "out, or dropped for recompute when host memory was full).", model,
                   counters.num_swap_outs + counters.num_recomputes)
    yield _counter("fastswitch:engine_stall_seconds", "Time the engine loop waited on copies "
                   "instead of computing.", None, counters.stall_ms / 1e3)
    yield _counter("fastswitch:kv_reuse_hits", "Requests that reused a previous turn's KV "
                   "from host memory.", None, counters.num_reuse_hits)
    yield _counter("fastswitch:kv_reused_prompt_tokens", "Prompt tokens not prefilled "
                   "because a previous turn's KV was reused.", None,
                   counters.num_reused_prompt_tokens)
    yield _counter("fastswitch:swap_out_reused_bytes", "Swap-out bytes not copied because the "
                   "host copy from an earlier swap was still valid.", None, counters.reused_bytes)
    yield _counter("fastswitch:cancelled_swap_outs", "Swap-outs a resume overtook (no copy "
                   "back needed).", None, counters.num_cancelled_swap_outs)
    preemptions = CounterMetricFamily("fastswitch:preemptions", "Preemptions by reason: the "
                                      "worker's own when GPU KV ran out (kv_exhausted).",
                                      labels=["reason"])
    preemptions.add_metric(["kv_exhausted"], counters.num_kv_exhausted_preemptions)
    yield preemptions
    swaps = CounterMetricFamily("fastswitch:swaps", "Context switches: swap-outs "
                                "(preemptions) and swap-ins (resumes).", labels=["direction"])
    swaps.add_metric(["out"], counters.num_swap_outs)
    swaps.add_metric(["in"], counters.num_swap_ins)
    yield swaps
    families = {
        "bytes": CounterMetricFamily("fastswitch:swap_bytes", "Bytes copied between GPU and "
                                     "host KV pools.", labels=["direction"]),
        "copies": CounterMetricFamily("fastswitch:swap_copies", "Copy calls issued (one per "
                                      "extent; per block x layer x K/V in baseline mode).",
                                      labels=["direction"]),
        "jobs": CounterMetricFamily("fastswitch:swap_jobs", "Copy jobs (one per switch or "
                                    "retired turn).", labels=["direction"]),
    }
    latency = HistogramMetricFamily("fastswitch:swap_latency_seconds", "Time one copy job "
                                    "took on its copy thread.", labels=["direction"])
    for direction, name in DIRECTIONS.items():
        totals = engine.swapper.totals[direction]
        families["bytes"].add_metric([name], totals.num_bytes)
        families["copies"].add_metric([name], totals.num_copies)
        families["jobs"].add_metric([name], totals.num_jobs)
        counts = list(totals.num_jobs_by_latency)  # a copy: the copy threads go on counting
        cumulative, buckets = 0, []
        for bound, count in zip((*COPY_LATENCY_BUCKETS_S, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency.add_metric([name], buckets, totals.copy_ms / 1e3)
    yield from families.values()
    yield latency


def _gauge(name: str, documentation: str, model: str | None, value: float) -> GaugeMetricFamily:
    labels = [] if model is None else ["model_name"]
    family = GaugeMetricFamily(name, documentation, labels=labels)
    family.add_metric([] if model is None else [model], value)
    return family


def _counter(name: str, documentation: str, model: str | None, value: float) -> CounterMetricFamily:
    labels = [] if model is None else ["model_name"]
    family = CounterMetricFamily(name, documentation, labels=labels)
    family.add_metric([] if model is None else [model], value)
    return family
