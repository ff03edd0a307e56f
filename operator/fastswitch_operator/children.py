"""Every child of a FastSwitchCluster, in the order they are applied."""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names
from fastswitch_operator.build_config import build_configmap
from fastswitch_operator.build_kvstore import (
    build_kvstore_deployment,
    build_kvstore_service,
    build_redis_deployment,
    build_redis_service,
)
from fastswitch_operator.build_scheduler import build_scheduler_deployment, build_scheduler_service
from fastswitch_operator.build_workers import build_workers_service, build_workers_statefulset
from fastswitch_operator.spec import ClusterSpec

# (apiVersion, kind) of every kind of child, for lookups and clean-ups.
CHILD_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
)


def build_children(cluster: ClusterSpec) -> list[dict[str, Any]]:
    """Desired children: configuration and Services first, so pods find them when they start."""
    children = [
        build_configmap(cluster),
        build_workers_service(cluster),
        build_kvstore_service(cluster),
        build_scheduler_service(cluster),
    ]
    if cluster.kvstore.is_redis_managed:
        children += [build_redis_service(cluster), build_redis_deployment(cluster)]
    children += [
        build_kvstore_deployment(cluster),
        build_workers_statefulset(cluster),
        build_scheduler_deployment(cluster),
    ]
    return children


def workload_names(cluster_name: str) -> dict[str, tuple[str, str]]:
    """component -> (kind, name) of the workload whose readiness is the component's."""
    return {
        names.WORKER: ("StatefulSet", names.workers_name(cluster_name)),
        names.SCHEDULER: ("Deployment", names.scheduler_name(cluster_name)),
        names.KVSTORE: ("Deployment", names.kvstore_name(cluster_name)),
        names.REDIS: ("Deployment", names.redis_name(cluster_name)),
    }
