"""Every child of a FastSwitchCluster, in the order they are applied.

The generated Secrets (build_secrets) are not among them: they are created once, before these,
and never patched or pruned.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastswitch_operator import names
from fastswitch_operator.build_config import build_configmap
from fastswitch_operator.build_frontend import (
    build_frontend_autoscaler,
    build_frontend_deployment,
    build_frontend_service,
)
from fastswitch_operator.build_kvstore import (
    build_kvstore_deployment,
    build_kvstore_service,
    build_redis_deployment,
    build_redis_service,
)
from fastswitch_operator.build_network_policies import build_network_policies
from fastswitch_operator.build_scheduler import build_scheduler_deployment, build_scheduler_service
from fastswitch_operator.build_secrets import with_secret_versions
from fastswitch_operator.build_workers import build_workers_service, build_workers_statefulset
from fastswitch_operator.spec import ClusterSpec

# (apiVersion, kind) of every kind of child, for lookups and clean-ups.
CHILD_KINDS = (
    ("v1", "ConfigMap"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)


def build_children(cluster: ClusterSpec,
                   secret_versions: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Desired children: configuration, NetworkPolicies and Services first, so pods find them
    (and are guarded) when they start; the frontends' autoscaler after the Deployment it
    scales. `secret_versions` (name -> resourceVersion of the generated Secrets) go on the pod
    templates that read them."""
    children = [
        build_configmap(cluster),
        *build_network_policies(cluster),
        build_workers_service(cluster),
        build_kvstore_service(cluster),
        build_scheduler_service(cluster),
        build_frontend_service(cluster),
    ]
    if cluster.kvstore.is_redis_managed:
        children += [build_redis_service(cluster), build_redis_deployment(cluster)]
    children += [
        build_kvstore_deployment(cluster),
        build_workers_statefulset(cluster),
        build_scheduler_deployment(cluster),
        build_frontend_deployment(cluster),
    ]
    autoscaler = build_frontend_autoscaler(cluster)
    if autoscaler is not None:
        children.append(autoscaler)
    return with_secret_versions(children, secret_versions or {})


def workload_names(cluster_name: str) -> dict[str, tuple[str, str]]:
    """component -> (kind, name) of the workload whose readiness is the component's."""
    return {
        names.WORKER: ("StatefulSet", names.workers_name(cluster_name)),
        names.FRONTEND: ("Deployment", names.frontend_name(cluster_name)),
        names.SCHEDULER: ("Deployment", names.scheduler_name(cluster_name)),
        names.KVSTORE: ("Deployment", names.kvstore_name(cluster_name)),
        names.REDIS: ("Deployment", names.redis_name(cluster_name)),
    }
