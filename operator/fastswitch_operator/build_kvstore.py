"""The kvstore (Deployment + Service) and, when no external Redis is given, a Redis for it.

The managed Redis keeps nothing on disk: it indexes KV that lives in the workers' host memory,
which a restart loses anyway, so an empty index after a Redis restart is correct.
"""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec

# `fastswitch kvstore` reads its Redis from this variable: a URL from a Secret (it may hold a
# password) never appears in the pod spec or the process's arguments.
REDIS_URL_ENV = "REDIS_URL"
# The uid of the `redis` user in the official Redis images; their entrypoint skips its root-only
# steps when started as this user.
REDIS_UID = 999


def redis_url_env(cluster: ClusterSpec) -> dict[str, Any]:
    kvstore = cluster.kvstore
    if kvstore.redis_url_secret is not None:
        ref = {"name": kvstore.redis_url_secret.name, "key": kvstore.redis_url_secret.key}
        return {"name": REDIS_URL_ENV, "valueFrom": {"secretKeyRef": ref}}
    url = kvstore.redis_url or names.redis_url(cluster.name, cluster.namespace)
    return {"name": REDIS_URL_ENV, "value": url}


def build_kvstore_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    name = names.kvstore_name(cluster.name)
    container = pods.container(
        cluster,
        name=names.KVSTORE,
        image=cluster.images.kvstore,
        command=["fastswitch"],
        args=["kvstore", f"--log-level={cluster.log_level}"],
        port=names.KVSTORE_PORT,
        resources=cluster.kvstore.placement.resources,
        env=[redis_url_env(cluster)],
    )
    container.update(pods.grpc_probes(names.KVSTORE_PORT, startup_seconds=120))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.object_meta(cluster, name, names.KVSTORE),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": names.selector_labels(cluster.name, names.KVSTORE)},
            "template": {
                "metadata": {"labels": names.labels(cluster.name, names.KVSTORE)},
                "spec": pods.pod_spec(cluster, cluster.kvstore.placement, [container]),
            },
        },
    }


def build_kvstore_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(cluster, names.kvstore_name(cluster.name), names.KVSTORE, names.KVSTORE_PORT)


def build_redis_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    name = names.redis_name(cluster.name)
    container = pods.container(
        cluster,
        name=names.REDIS,
        image=cluster.images.redis,
        args=["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"],
        port=names.REDIS_PORT,
        port_name="redis",
        resources=cluster.kvstore.redis_placement.resources,
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
