"""A FastSwitchCluster's spec, parsed and validated into frozen dataclasses.

The API server already validates against the CRD's schema and applies its defaults; the operator
checks again (same rules, same defaults) so that a spec that slipped through - an older CRD, a
server without CEL, a test API server - fails with one clear message instead of broken pods.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastswitch_operator import names
from fastswitch_operator.spec_fields import (
    DNS_SUBDOMAIN,
    FieldReader,
    Placement,
    SecretKey,
    parse_bytes,
    parse_placement,
    parse_secret_key,
)
from fastswitch_operator.spec_frontend import SERVICE_TYPES, FrontendSpec, parse_frontend
from fastswitch_operator.spec_monitoring import MonitoringSpec, parse_monitoring
from fastswitch_operator.spec_security import (
    NetworkPolicySpec,
    TLSSpec,
    parse_network_policy,
    parse_tls,
)
from fastswitch_operator.spec_settings import SCHEDULER_SETTINGS, WORKER_SETTINGS, parse_settings

POLICIES = ("vtc", "fcfs", "priority", "trace")
DTYPES = ("float32", "float16", "bfloat16")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
MODES = ("fastswitch", "baseline")
LOG_LEVELS = ("debug", "info", "warning", "error")
_RELATIVE_PATH = re.compile(r"^([A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*)?$")


class InvalidSpecError(ValueError):
    """A spec the operator will not deploy; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ModelSpec:
    preset: str | None
    pvc_claim_name: str | None
    pvc_path: str
    dtype: str | None
    dummy_weights: bool


@dataclass(frozen=True)
class WorkersSpec:
    replicas: int
    gpus: int
    gpu_resource_name: str
    block_size: int
    kv_memory_fraction: float
    host_swap_bytes: int
    mode: str
    drain_timeout_seconds: int
    placement: Placement
    # spec.workers.settings: every other worker setting, camelCase -> value (spec_settings.py)
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerSpec:
    replicas: int
    policy: str
    tick_ms: int
    policy_params: dict[str, Any]  # the chosen policy's parameters, camelCase as in the spec
    # The tenants file: the frontends authenticate with its tokens, the scheduler weighs
    # tenants and admits admins with it.
    tenants_secret: SecretKey | None
    # Overload answers RESOURCE_EXHAUSTED past these many live requests (cluster, tenant); a
    # request no worker can take fails with UNAVAILABLE after unroutable_timeout_seconds.
    max_queued_requests: int
    max_queued_per_tenant: int
    unroutable_timeout_seconds: float
    placement: Placement
    # spec.scheduler.settings: every other scheduler setting, camelCase -> value
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KVStoreSpec:
    redis_url: str | None
    redis_url_secret: SecretKey | None
    placement: Placement
    redis_placement: Placement

    @property
    def is_redis_managed(self) -> bool:
        """True when the operator runs Redis itself (no external Redis was given)."""
        return self.redis_url is None and self.redis_url_secret is None


@dataclass(frozen=True)
class Images:
    worker: str
    frontend: str
    scheduler: str
    kvstore: str
    redis: str
    pull_policy: str
    pull_secrets: tuple[str, ...]


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    namespace: str
    log_level: str
    model: ModelSpec
    workers: WorkersSpec
    frontend: FrontendSpec
    scheduler: SchedulerSpec
    kvstore: KVStoreSpec
    images: Images
    tls: TLSSpec | None
    network_policy: NetworkPolicySpec
    monitoring: MonitoringSpec


def _model(spec: FieldReader) -> ModelSpec:
    model = spec.sub("model", ("preset", "pvc", "dtype", "dummyWeights"))
    if not spec.has("model"):
        spec.problems.append("spec.model is required")
    preset = model.get("preset", "string")
    claim, path = None, ""
    if model.has("pvc"):
        pvc = model.sub("pvc", ("claimName", "path"))
        claim, path = pvc.get("claimName", "string"), pvc.get("path", "string", "")
        if not claim or not DNS_SUBDOMAIN.match(claim):
            pvc.problems.append(f"{pvc.path}.claimName must be the name of a PersistentVolumeClaim")
        if not _RELATIVE_PATH.match(path) or ".." in path.split("/"):
            pvc.problems.append(f"{pvc.path}.path must be a relative path inside the claim")
    if (preset is None) == (claim is None) and spec.has("model"):
        spec.problems.append("set exactly one of spec.model.preset or spec.model.pvc")
    return ModelSpec(preset, claim, path, model.get("dtype", "string", choices=DTYPES),
                     model.get("dummyWeights", "boolean", False))


def _workers(spec: FieldReader) -> WorkersSpec:
    known = ("replicas", "gpus", "gpuResourceName", "blockSize", "kvMemoryFraction", "mode",
             "hostSwapBytes", "drainTimeoutSeconds", "resources", "nodeSelector", "tolerations",
             "settings")
    workers = spec.sub("workers", known)
    swap = workers.data.get("hostSwapBytes", "8Gi")
    swap_bytes = parse_bytes(swap)
    if swap_bytes is None or swap_bytes < 0:
        workers.problems.append(f"spec.workers.hostSwapBytes is not a byte quantity: {swap!r}")
        swap_bytes = 0
    placement = parse_placement(workers)
    memory_limit = parse_bytes(placement.resources.get("limits", {}).get("memory", 0))
    if memory_limit and memory_limit < swap_bytes:
        workers.problems.append(
            "spec.workers.resources.limits.memory must hold spec.workers.hostSwapBytes "
            f"({memory_limit} < {swap_bytes} bytes)"
        )
    kv_fraction = workers.get("kvMemoryFraction", "number", 0.85, high=1)
    if kv_fraction <= 0:
        workers.problems.append("spec.workers.kvMemoryFraction must be greater than 0")
    return WorkersSpec(
        replicas=workers.get("replicas", "integer", 1, low=0),
        gpus=workers.get("gpus", "integer", 1, low=0),
        gpu_resource_name=workers.get("gpuResourceName", "string", "nvidia.com/gpu"),
        block_size=workers.get("blockSize", "integer", 16, low=1, high=1024),
        kv_memory_fraction=float(kv_fraction),
        host_swap_bytes=swap_bytes,
        mode=workers.get("mode", "string", "fastswitch", choices=MODES),
        drain_timeout_seconds=workers.get("drainTimeoutSeconds", "integer", 120, low=0, high=3600),
        placement=placement,
        settings=parse_settings(workers, WORKER_SETTINGS),
    )


def _scheduler(spec: FieldReader) -> SchedulerSpec:
    known = ("replicas", "policy", "tickMs", "vtc", "trace", "tenantsSecret", "serviceType",
             "maxQueuedRequests", "maxQueuedPerTenant", "unroutableTimeoutSeconds",
             "resources", "nodeSelector", "tolerations", "settings")
    scheduler = spec.sub("scheduler", known)
    policy = scheduler.get("policy", "string", "vtc", choices=POLICIES)
    params: dict[str, Any] = {}
    if scheduler.has("vtc"):
        vtc = scheduler.sub("vtc", ("preemptThreshold",))
        params = _drop_none({"preemptThreshold": vtc.get("preemptThreshold", "number", low=0)})
    if scheduler.has("trace"):
        trace = scheduler.sub("trace", ("pattern", "updateProbability", "seed"))
        params = _drop_none({
            "pattern": trace.get("pattern", "string", choices=("random", "markov")),
            "updateProbability": trace.get("updateProbability", "number", low=0, high=1),
            "seed": trace.get("seed", "integer"),
        })
    for params_policy in ("vtc", "trace"):
        if scheduler.has(params_policy) and policy != params_policy:
            scheduler.problems.append(
                f"spec.scheduler.{params_policy} is only used by policy {params_policy}"
            )
    # The old name of spec.frontend.serviceType (spec_frontend reads it): only checked here.
    scheduler.get("serviceType", "string", choices=SERVICE_TYPES)
    unroutable_s = scheduler.get("unroutableTimeoutSeconds", "number", 30, high=3600)
    if unroutable_s <= 0:
        scheduler.problems.append("spec.scheduler.unroutableTimeoutSeconds must be greater than 0")
    return SchedulerSpec(
        # One scheduler owns the workers' sessions: a second would take them over.
        replicas=scheduler.get("replicas", "integer", 1, low=1, high=1),
        policy=policy,
        # The scheduler's own default (fastswitch_scheduler.config.DEFAULT_TICK_MS says why).
        tick_ms=scheduler.get("tickMs", "integer", 20, low=1, high=60000),
        policy_params=params,
        tenants_secret=parse_secret_key(scheduler, "tenantsSecret", "tenants.json"),
        max_queued_requests=scheduler.get("maxQueuedRequests", "integer", 10_000,
                                          low=1, high=1_000_000),
        max_queued_per_tenant=scheduler.get("maxQueuedPerTenant", "integer", 2_000,
                                            low=1, high=1_000_000),
        unroutable_timeout_seconds=float(unroutable_s),
        placement=parse_placement(scheduler),
        settings=parse_settings(scheduler, SCHEDULER_SETTINGS),
    )


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _kvstore(spec: FieldReader) -> KVStoreSpec:
    kvstore = spec.sub("kvstore", ("resources", "redis"))
    redis = kvstore.sub("redis", ("url", "urlSecret", "resources"))
    url = redis.get("url", "string")
    if url is not None and not url.startswith(("redis://", "rediss://")):
        redis.problems.append("spec.kvstore.redis.url must start with redis:// or rediss://")
    url_secret = parse_secret_key(redis, "urlSecret", None)
    if url is not None and url_secret is not None:
        redis.problems.append(
            "set at most one of spec.kvstore.redis.url or spec.kvstore.redis.urlSecret"
        )
    return KVStoreSpec(url, url_secret, parse_placement(kvstore, with_scheduling=False),
                       parse_placement(redis, with_scheduling=False))


def _images(spec: FieldReader, defaults: Images) -> Images:
    images = spec.sub("images", ("worker", "frontend", "scheduler", "kvstore", "redis",
                                 "pullPolicy", "pullSecrets"))
    pull_secrets = images.get("pullSecrets", "array", list(defaults.pull_secrets))
    return Images(
        worker=images.get("worker", "string", defaults.worker),
        frontend=images.get("frontend", "string", defaults.frontend),
        scheduler=images.get("scheduler", "string", defaults.scheduler),
        kvstore=images.get("kvstore", "string", defaults.kvstore),
        redis=images.get("redis", "string", defaults.redis),
        pull_policy=images.get("pullPolicy", "string", defaults.pull_policy, choices=PULL_POLICIES),
        pull_secrets=tuple(str(s) for s in pull_secrets),
    )


def parse_spec(name: str, namespace: str, spec: Mapping[str, Any], default_images: Images) -> ClusterSpec:
    """Validate a FastSwitchCluster's spec; raises InvalidSpecError listing every problem."""
    problems: list[str] = []
    if len(name) > names.MAX_CLUSTER_NAME_LENGTH:
        problems.append(
            f"the name of a FastSwitchCluster is at most {names.MAX_CLUSTER_NAME_LENGTH} "
            f"characters (its children add suffixes), not {len(name)}"
        )
    reader = FieldReader(spec, "spec", problems,
                         ("logLevel", "model", "workers", "frontend", "scheduler", "kvstore",
                          "images", "tls", "networkPolicy", "monitoring"))
    cluster = ClusterSpec(
        name=name,
        namespace=namespace,
        log_level=reader.get("logLevel", "string", "info", choices=LOG_LEVELS),
        model=_model(reader),
        workers=_workers(reader),
        frontend=parse_frontend(reader),
        scheduler=_scheduler(reader),
        kvstore=_kvstore(reader),
        images=_images(reader, default_images),
        tls=parse_tls(reader),
        network_policy=parse_network_policy(reader),
        monitoring=parse_monitoring(reader),
    )
    if problems:
        raise InvalidSpecError(problems)
    return cluster
