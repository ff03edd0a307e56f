"""The kvstore (Deployment + Service) and, when no external Redis is given, a Redis for it.

The managed Redis keeps nothing on disk: it indexes KV that lives in the workers' host memory,
which a restart loses anyway, so an empty index after a Redis restart is correct. It requires
the password of the cluster's generated `<cluster>-redis` Secret (build_secrets), which reaches
Redis and the kvstore's REDIS_URL through the kubelet's $(VAR) expansion of a secretKeyRef
variable, never through the pod spec. An external Redis's URL should carry its own password.
"""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.build_secrets import REDIS_PASSWORD_ENV, redis_password_env
from fastswitch_operator.build_transport import (
    service_probes,
    transport_args,
    transport_env,
    transport_volume,
)
from fastswitch_operator.spec import ClusterSpec

# `fastswitch kvstore` reads its Redis from this variable: a URL from a Secret (it may hold a
# password) never appears in the pod spec or the process's arguments.
REDIS_URL_ENV = "REDIS_URL"
# The uid of the `redis` user in the official Redis images; their entrypoint skips its root-only
# steps when started as this user.
REDIS_UID = 999


def redis_url_env(cluster: ClusterSpec) -> list[dict[str, Any]]:
    """REDIS_URL of the kvstore, and for the managed Redis the password it expands."""
    kvstore = cluster.kvstore
    if kvstore.redis_url_secret is not None:
        ref = {"name": kvstore.redis_url_secret.name, "key": kvstore.redis_url_secret.key}
        return [{"name": REDIS_URL_ENV, "valueFrom": {"secretKeyRef": ref}}]
    if kvstore.redis_url is not None:
        return [{"name": REDIS_URL_ENV, "value": kvstore.redis_url}]
    # $(REDIS_PASSWORD) expands only to a variable defined before this one.
    url = names.redis_url(cluster.name, cluster.namespace, REDIS_PASSWORD_ENV)
    return [redis_password_env(cluster), {"name": REDIS_URL_ENV, "value": url}]


def build_kvstore_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    name = names.kvstore_name(cluster.name)
    mounts, volumes = transport_volume(cluster)
    container = pods.container(
        cluster,
        name=names.KVSTORE,
        image=cluster.images.kvstore,
        command=["fastswitch"],
        args=["kvstore", *pods.metrics_args(names.KVSTORE), f"--log-level={cluster.log_level}",
              *transport_args(cluster)],
        port=names.KVSTORE_PORT,
        resources=cluster.kvstore.placement.resources,
        env=[*transport_env(cluster, names.KVSTORE), *redis_url_env(cluster)],
        mounts=mounts,
        metrics_port=names.METRICS_PORTS[names.KVSTORE],
    )
    container.update(service_probes(cluster, names.KVSTORE_PORT, startup_seconds=120))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.object_meta(cluster, name, names.KVSTORE),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": names.selector_labels(cluster.name, names.KVSTORE)},
            "template": {
                "metadata": {"labels": names.labels(cluster.name, names.KVSTORE),
                             **_annotations(pods.scrape_annotations(cluster, names.KVSTORE))},
                "spec": pods.pod_spec(cluster, cluster.kvstore.placement, [container],
                                      volumes=volumes),
            },
        },
    }


def _annotations(annotations: dict[str, str]) -> dict[str, Any]:
    """A pod template's `annotations` entry, left out when there are none."""
    return {"annotations": annotations} if annotations else {}


def build_kvstore_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(cluster, names.kvstore_name(cluster.name), names.KVSTORE, names.KVSTORE_PORT)


def build_redis_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    name = names.redis_name(cluster.name)
    container = pods.container(
        cluster,
        name=names.REDIS,
        image=cluster.images.redis,
        # Protected mode refuses nothing once a password is required; it guards the day one
        # is not. The password is expanded by the kubelet from a secretKeyRef variable.
        args=["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "yes",
              "--requirepass", f"$({REDIS_PASSWORD_ENV})"],
        port=names.REDIS_PORT,
        port_name="redis",
        resources=cluster.kvstore.redis_placement.resources,
        env=[redis_password_env(cluster)],
        mounts=[{"name": "data", "mountPath": "/data"}],
    )
    container["readinessProbe"] = {"tcpSocket": {"port": names.REDIS_PORT}, "periodSeconds": 5}
    container["livenessProbe"] = {"tcpSocket": {"port": names.REDIS_PORT}, "periodSeconds": 10}
    spec = pods.pod_spec(
        cluster,
        cluster.kvstore.redis_placement,
        [container],
        volumes=[{"name": "data", "emptyDir": {}}],
        uid=REDIS_UID,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.object_meta(cluster, name, names.REDIS),
        "spec": {
            "replicas": 1,
            # Never two Redis at once: the kvstore would index into the one about to go.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": names.selector_labels(cluster.name, names.REDIS)},
            "template": {
                "metadata": {"labels": names.labels(cluster.name, names.REDIS)},
                "spec": spec,
            },
        },
    }


def build_redis_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(
        cluster, names.redis_name(cluster.name), names.REDIS, names.REDIS_PORT, port_name="redis"
    )
