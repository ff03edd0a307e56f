"""Pieces every child workload shares: metadata, security contexts, containers, pod spec,
Services (probes and transport security: build_transport)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

from fastswitch_operator import names
from fastswitch_operator.spec import ClusterSpec
from fastswitch_operator.spec_fields import Placement

# The user the FastSwitch images run as (see docker/*.Dockerfile).
APP_UID = 10001
TMP_VOLUME = {"name": "tmp", "emptyDir": {}}
TMP_MOUNT = {"name": "tmp", "mountPath": "/tmp"}
# Set from the pod's name (downward API); args refer to it as $(FASTSWITCH_POD_NAME), which the
# kubelet expands.
POD_NAME_ENV = "FASTSWITCH_POD_NAME"


class NamedPort(NamedTuple):
    """A TCP port a container serves, by the name its Services target it with.

    `app_protocol`: the Service port's appProtocol ("grpc", "http", ...), None for none.
    """

    name: str
    port: int
    app_protocol: str | None = None


def object_meta(cluster: ClusterSpec, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": cluster.namespace,
        "labels": names.labels(cluster.name, component),
    }


def pod_name_env() -> dict[str, Any]:
    return {"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}


def joined_volumes(*parts: tuple[list[dict[str, Any]], list[dict[str, Any]]]
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One (mounts, volumes) pair from several (the model's, TLS's, ...), in order."""
    mounts = [mount for part_mounts, _ in parts for mount in part_mounts]
    volumes = [volume for _, part_volumes in parts for volume in part_volumes]
    return mounts, volumes


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def pod_security_context(uid: int = APP_UID) -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(
    cluster: ClusterSpec,
    *,
    name: str,
    image: str,
    args: list[str],
    port: int,
    resources: dict[str, Any],
    command: list[str] | None = None,
    port_name: str = "grpc",
    env: list[dict[str, Any]] | None = None,
    env_from: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
    extra_ports: Sequence[NamedPort] = (),
    metrics_port: int | None = None,
) -> dict[str, Any]:
    """A container with the hardened defaults; `mounts` come after the writable /tmp.

    FastSwitch images run `fastswitch <service> ...`; `command=None` keeps the image's own.
    `extra_ports`: what it serves beside `port` (the frontends' HTTP API), in that order.
    `metrics_port`: its /metrics port, named "metrics" (what the chart's PodMonitor scrapes).
    """
    ports = [{"name": named.name, "containerPort": named.port, "protocol": "TCP"}
             for named in (NamedPort(port_name, port), *extra_ports)]
    if metrics_port is not None:
        ports.append({"name": names.METRICS_PORT_NAME, "containerPort": metrics_port,
                      "protocol": "TCP"})
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": cluster.images.pull_policy,
        **({"command": command} if command else {}),
        "args": args,
        "ports": ports,
        "env": env or [],
        **({"envFrom": env_from} if env_from else {}),
        "resources": copy.deepcopy(resources),
        "securityContext": container_security_context(),
        "volumeMounts": [TMP_MOUNT, *(mounts or [])],
    }
    return spec


def metrics_args(component: str) -> list[str]:
    """The flag that puts a service's /metrics on its component's port."""
    return [f"--metrics-port={names.METRICS_PORTS[component]}"]


def scrape_annotations(cluster: ClusterSpec, component: str) -> dict[str, str]:
    """prometheus.io/* pod annotations when spec.monitoring.scrapeAnnotations is on."""
    if not cluster.monitoring.scrape_annotations:
        return {}
    return {"prometheus.io/scrape": "true",
            "prometheus.io/port": str(names.METRICS_PORTS[component]),
            "prometheus.io/path": names.METRICS_PATH}


def pod_spec(
    cluster: ClusterSpec,
    placement: Placement,
    containers: list[dict[str, Any]],
    *,
    volumes: list[dict[str, Any]] | None = None,
    uid: int = APP_UID,
    termination_grace_seconds: int = 30,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": containers,
        "volumes": [TMP_VOLUME, *(volumes or [])],
        "securityContext": pod_security_context(uid),
        "terminationGracePeriodSeconds": termination_grace_seconds,
        # Service links would put every Service of the namespace into the environment.
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if cluster.images.pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in cluster.images.pull_secrets]
    if placement.node_selector:
        spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        spec["tolerations"] = copy.deepcopy(placement.tolerations)
    return spec


def service(
    cluster: ClusterSpec,
    name: str,
    component: str,
    port: int,
    *,
    port_name: str = "grpc",
    extra_ports: Sequence[NamedPort] = (),
    service_type: str = "ClusterIP",
    headless: bool = False,
) -> dict[str, Any]:
    """A Service of a component's pods on `port` (named `port_name`), then `extra_ports`; each
    targets the container port of its name."""
    main = NamedPort(port_name, port, "grpc" if port_name == "grpc" else None)
    spec: dict[str, Any] = {
        "type": service_type,
        "selector": names.selector_labels(cluster.name, component),
        "ports": [_service_port(named) for named in (main, *extra_ports)],
    }
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = False
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(cluster, name, component),
        "spec": spec,
    }


def _service_port(named: NamedPort) -> dict[str, Any]:
    port: dict[str, Any] = {"name": named.name, "port": named.port, "targetPort": named.name,
                            "protocol": "TCP"}
    if named.app_protocol is not None:
        port["appProtocol"] = named.app_protocol
    return port
