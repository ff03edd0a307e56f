"""The frontend part of a FastSwitchCluster's spec: how many client-facing replicas run, how
big they are, and whether a HorizontalPodAutoscaler sizes them instead.

Frontends hold no state a restart loses (clients reconnect, requests are resubmitted from the
frontend that owns their stream), so they scale on CPU: tokenizing prompts and relaying tokens
is their work. Autoscaling on CPU utilization needs a CPU request to measure against, hence the
default requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastswitch_operator.spec_fields import FieldReader, Placement, parse_placement

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer")
DEFAULT_REPLICAS = 2
# What the CRD defaults spec.frontend.resources to: enough for a tokenizer and the streams.
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
# The HorizontalPodAutoscaler's own defaults (autoscaling/v1: 1 replica at least, 80% CPU).
DEFAULT_MIN_REPLICAS = 1
DEFAULT_TARGET_CPU_PERCENT = 80


@dataclass(frozen=True)
class AutoscalingSpec:
    min_replicas: int
    max_replicas: int
    target_cpu_utilization_percentage: int


@dataclass(frozen=True)
class FrontendSpec:
    # Ignored while `autoscaling` is set: the HorizontalPodAutoscaler owns the count then.
    replicas: int
    autoscaling: AutoscalingSpec | None
    service_type: str  # of the Service clients call
    placement: Placement


def parse_frontend(spec: FieldReader) -> FrontendSpec:
    known = ("replicas", "autoscaling", "serviceType", "resources", "nodeSelector", "tolerations")
    frontend = spec.sub("frontend", known)
    placement = parse_placement(frontend, default_resources=DEFAULT_RESOURCES)
    autoscaling = _autoscaling(frontend) if frontend.has("autoscaling") else None
    if autoscaling is not None and "cpu" not in (placement.resources.get("requests") or {}):
        frontend.problems.append(
            "spec.frontend.autoscaling needs spec.frontend.resources.requests.cpu (CPU "
            "utilization is measured against it)")
    return FrontendSpec(
        replicas=frontend.get("replicas", "integer", DEFAULT_REPLICAS, low=1),
        autoscaling=autoscaling,
        service_type=frontend.get("serviceType", "string", _scheduler_service_type(spec),
                                  choices=SERVICE_TYPES),
        placement=placement,
    )


def _scheduler_service_type(spec: FieldReader) -> str:
    """spec.scheduler.serviceType, the deprecated name of spec.frontend.serviceType (from when
    clients called the scheduler), or ClusterIP. The scheduler's own parsing checks its value.

    spec.frontend.serviceType wins when both are set: CRDs before the frontend defaulted the
    old field, so stored clusters carry it whether or not anyone chose it.
    """
    scheduler = spec.data.get("scheduler")
    chosen = scheduler.get("serviceType") if isinstance(scheduler, Mapping) else None
    return chosen if chosen in SERVICE_TYPES else "ClusterIP"


def _autoscaling(frontend: FieldReader) -> AutoscalingSpec:
    autoscaling = frontend.sub("autoscaling", ("minReplicas", "maxReplicas",
                                               "targetCPUUtilizationPercentage"))
    min_replicas = autoscaling.get("minReplicas", "integer", DEFAULT_MIN_REPLICAS, low=1)
    max_replicas = autoscaling.get("maxReplicas", "integer", low=1)
    if max_replicas is None:
        autoscaling.problems.append(f"{autoscaling.path}.maxReplicas is required")
        max_replicas = min_replicas
    elif max_replicas < min_replicas:
        autoscaling.problems.append(
            f"{autoscaling.path}.maxReplicas must be at least minReplicas ({min_replicas})")
    return AutoscalingSpec(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_cpu_utilization_percentage=autoscaling.get(
            "targetCPUUtilizationPercentage", "integer", DEFAULT_TARGET_CPU_PERCENT, low=1),
    )

