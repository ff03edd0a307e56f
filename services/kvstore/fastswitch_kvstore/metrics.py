"""The kvstore's Prometheus metrics: its calls by method and outcome, and whether Redis answers.

A LookupKV answered OK is a conversation whose KV some worker holds (a routing hit); NOT_FOUND
is a miss. One increment per call, in the servicer's error wrapper, where every outcome passes.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class KVStoreMetrics:
    """One kvstore's registry (served at /metrics)."""

    def __init__(self, is_redis_up: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter("fastswitch:kvstore_calls", "kvstore calls by method and gRPC "
                             "status (LookupKV OK: a conversation's KV is held somewhere).",
                             ("method", "code"), registry=self.registry)
        self.registry.register(_RedisUp(is_redis_up))

    def count(self, method: str, code: str) -> None:
        self.calls.labels(method, code).inc()


class _RedisUp(Collector):
    def __init__(self, is_redis_up: Callable[[], bool]) -> None:
        self.is_redis_up = is_redis_up

    def collect(self):
        family = GaugeMetricFamily("fastswitch:kvstore_redis_up",
                                   "1 when Redis answered the latest health ping.")
        family.add_metric([], 1.0 if self.is_redis_up() else 0.0)
        yield family
