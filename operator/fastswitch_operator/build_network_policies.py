"""NetworkPolicies: each internal port open only to the cluster's own pods that call it.

- frontends (the clients' ports, gRPC and the OpenAI-compatible HTTP API): from
  spec.networkPolicy.frontendIngress (or its old name schedulerIngress), or from anywhere when
  unset;
- scheduler (gRPC): from the frontends;
- workers (gRPC): from the scheduler (control) and the frontends (their requests' data);
- kvstore (gRPC): from the scheduler and the workers;
- the managed Redis: from the kvstore;
- the metrics port of the frontends, scheduler, workers and kvstore: from
  spec.monitoring.scraperIngress (Prometheus), or from anywhere when unset.

Peers are matched by the cluster's selector labels, so another FastSwitchCluster in the same
namespace is a stranger too. Only ingress is restricted. Kubelet probes come from the node,
which network plugins let through; a plugin without NetworkPolicy support ignores them (the
cluster credential still guards every internal port).
"""

from __future__ import annotations

import copy
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec


def _pods_of(cluster: ClusterSpec, component: str) -> dict[str, Any]:
    return {"podSelector": {"matchLabels": names.selector_labels(cluster.name, component)}}


def _policy(cluster: ClusterSpec, component: str,
            ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": pods.object_meta(cluster, names.network_policy_name(cluster.name, component),
                                     component),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(cluster.name, component)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def _metrics_rules(cluster: ClusterSpec, component: str) -> list[dict[str, Any]]:
    """The scrapers' way to a component's /metrics port (none for Redis, which has none)."""
    if component not in names.METRICS_PORTS:
        return []
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": names.METRICS_PORTS[component]}]}
    peers = cluster.monitoring.scraper_ingress
    if peers is not None:
        assert peers, "scraperIngress must list at least one peer"  # `from: []` = everyone
        rule["from"] = [copy.deepcopy(peer) for peer in peers]
    return [rule]


def _from_components(cluster: ClusterSpec, component: str, port: int,
                     callers: tuple[str, ...]) -> dict[str, Any]:
    return _policy(cluster, component, [{
        "from": [_pods_of(cluster, caller) for caller in callers],
        "ports": [{"protocol": "TCP", "port": port}],
    }, *_metrics_rules(cluster, component)])


def build_workers_network_policy(cluster: ClusterSpec) -> dict[str, Any]:
    return _from_components(cluster, names.WORKER, names.WORKER_PORT,
                            (names.SCHEDULER, names.FRONTEND))


def build_scheduler_network_policy(cluster: ClusterSpec) -> dict[str, Any]:
    return _from_components(cluster, names.SCHEDULER, names.SCHEDULER_PORT, (names.FRONTEND,))


def build_kvstore_network_policy(cluster: ClusterSpec) -> dict[str, Any]:
    return _from_components(cluster, names.KVSTORE, names.KVSTORE_PORT,
                            (names.SCHEDULER, names.WORKER))


def build_redis_network_policy(cluster: ClusterSpec) -> dict[str, Any]:
    return _from_components(cluster, names.REDIS, names.REDIS_PORT, (names.KVSTORE,))


def build_frontend_network_policy(cluster: ClusterSpec) -> dict[str, Any]:
    # Clients may use either API: both ports admit the same peers.
    rule: dict[str, Any] = {"ports": [{"protocol": "TCP", "port": port}
                                      for port in (names.FRONTEND_PORT, names.FRONTEND_HTTP_PORT)]}
    peers = cluster.network_policy.frontend_ingress
    if peers is not None:
        # Never an empty list here: `from: []` would allow every source (the spec forbids it).
        assert peers, "frontendIngress must list at least one peer"
        rule["from"] = [copy.deepcopy(peer) for peer in peers]
    return _policy(cluster, names.FRONTEND, [rule, *_metrics_rules(cluster, names.FRONTEND)])


def build_network_policies(cluster: ClusterSpec) -> list[dict[str, Any]]:
    """Every NetworkPolicy of the cluster; none when spec.networkPolicy.enabled is false."""
    if not cluster.network_policy.enabled:
        return []
    policies = [build_workers_network_policy(cluster), build_kvstore_network_policy(cluster),
                build_scheduler_network_policy(cluster), build_frontend_network_policy(cluster)]
    if cluster.kvstore.is_redis_managed:
        policies.append(build_redis_network_policy(cluster))
    return policies
