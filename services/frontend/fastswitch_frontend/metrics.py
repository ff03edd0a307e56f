"""The frontend's Prometheus metrics: request latency and tokens, where requests are served.

vLLM's names and buckets where the meaning is the same (dashboards and autoscalers read them),
each with vLLM's `model_name` label and a `tenant` label (tenants are the tenants file's, a
bounded set). The core calls one method at each point of a request's life it already handles
(`on_output` for a worker's tokens, `on_end` for the final response or failure, `forget` when
the request leaves the core), so every API served by the core (gRPC, HTTP) is measured alike.

Asyncio loop only, like the core.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fastswitch.v1 import common_pb2
from fastswitch_frontend.requests import Failure, FrontendRequest

# vLLM's buckets (vllm/v1/metrics/loggers.py), a few finer ones first for fast GPUs.
TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                  5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5,
                 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_BUCKETS_S = (0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0,
                     30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISHED_REASONS = {common_pb2.FINISH_REASON_STOP: "stop",
                    common_pb2.FINISH_REASON_LENGTH: "length",
                    common_pb2.FINISH_REASON_ABORTED: "abort"}
LABELS = ("model_name", "tenant")


class FrontendMetrics:
    """One frontend's metrics in a registry of its own (`registry`, served at /metrics)."""

    def __init__(self, model_name: str, num_open_requests: Callable[[], int]) -> None:
        self.model_name = model_name
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft_s = Histogram("vllm:time_to_first_token_seconds",
                                "Time from the request's arrival at the frontend to its first "
                                "token.", LABELS, buckets=TTFT_BUCKETS_S, registry=r)
        self.itl_s = Histogram("vllm:inter_token_latency_seconds",
                               "Time between two tokens of a request, as its frontend received "
                               "them.", LABELS, buckets=ITL_BUCKETS_S, registry=r)
        self.e2e_s = Histogram("vllm:e2e_request_latency_seconds",
                               "Time from arrival to the last token of requests that finished.",
                               LABELS, buckets=REQUEST_BUCKETS_S, registry=r)
        self.queue_s = Histogram("vllm:request_queue_time_seconds",
                                 "Time from arrival until the request first ran on a worker "
                                 "(placement, admission and the engine's queue).", LABELS,
                                 buckets=REQUEST_BUCKETS_S, registry=r)
        self.prompt_tokens = Counter("vllm:prompt_tokens",
                                     "Prompt tokens of requests that got their first token.",
                                     LABELS, registry=r)
        self.generation_tokens = Counter("vllm:generation_tokens",
                                         "Tokens generated and streamed to clients.", LABELS,
                                         registry=r)
        self.successes = Counter("vllm:request_success",
                                 "Requests that finished, by finish reason.",
                                 (*LABELS, "finished_reason"), registry=r)
        self.failures = Counter("fastswitch:request_failures",
                                "Requests that ended with an error status, by gRPC code.",
                                (*LABELS, "code"), registry=r)
        r.register(_OpenRequests(model_name, num_open_requests))
        self._last_token_s: dict[str, float] = {}  # request id -> when its latest token came

    def on_output(self, request: FrontendRequest, num_new_tokens: int, now_s: float) -> None:
        """A worker's output with `num_new_tokens` joined `request` (after take_output)."""
        if not num_new_tokens:
            return
        labels = (self.model_name, request.tenant.name)
        self.generation_tokens.labels(*labels).inc(num_new_tokens)
        previous_s = self._last_token_s.get(request.request_id)
        self._last_token_s[request.request_id] = now_s
        if previous_s is None:  # the first token
            self.ttft_s.labels(*labels).observe(now_s - request.arrival_s)
            self.prompt_tokens.labels(*labels).inc(len(request.prompt_token_ids))
            num_new_tokens -= 1
            previous_s = now_s
        # Tokens that arrive together (several steps coalesced) share the gap evenly.
        if num_new_tokens:
            gap_s = (now_s - previous_s) / num_new_tokens
            itl = self.itl_s.labels(*labels)
            for _ in range(num_new_tokens):
                itl.observe(gap_s)

    def on_end(self, request: FrontendRequest, final, now_s: float | None = None) -> None:
        """The request ends with `final`: its last response, or a Failure."""
        now_s = time.monotonic() if now_s is None else now_s
        labels = (self.model_name, request.tenant.name)
        if isinstance(final, Failure):
            self.failures.labels(*labels, final.code.name.lower()).inc()
            return
        reason = FINISHED_REASONS.get(final.finish_reason, "unknown")
        self.successes.labels(*labels, reason).inc()
        self.e2e_s.labels(*labels).observe(now_s - request.arrival_s)
        started_s = request.first_running_s or request.first_token_s
        if started_s is not None:
            self.queue_s.labels(*labels).observe(started_s - request.arrival_s)

    def forget(self, request: FrontendRequest) -> None:
        """The request left the core (finished, failed or cancelled)."""
        self._last_token_s.pop(request.request_id, None)


class _OpenRequests(Collector):
    """Requests this frontend holds now, read from the core at scrape time."""

    def __init__(self, model_name: str, num_open_requests: Callable[[], int]) -> None:
        self.model_name = model_name
        self.num_open_requests = num_open_requests

    def collect(self):
        family = GaugeMetricFamily("fastswitch:frontend_open_requests",
                                   "Requests this frontend is streaming or waiting on.",
                                   labels=["model_name"])
        family.add_metric([self.model_name], self.num_open_requests())
        yield family
