"""Pieces every child workload shares: metadata, security contexts, containers, pod spec,
Services (probes and transport security: build_transport)."""

from __future__ import annotations

import copy
from typing import Any

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
) -> dict[str, Any]:
    """A container with the hardened defaults; `mounts` come after the writable /tmp.

    FastSwitch images run `fastswitch <service> ...`; `command=None` keeps the image's own.
    """
    spec: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": cluster.images.pull_policy,
        **({"command": command} if command else {}),
        "args": args,
        "ports": [{"name": port_name, "containerPort": port, "protocol": "TCP"}],
        "env": env or [],
        **({"envFrom": env_from} if env_from else {}),
        "resources": copy.deepcopy(resources),
        "securityContext": container_security_context(),
        "volumeMounts": [TMP_MOUNT, *(mounts or [])],
    }
    return spec


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
    service_type: str = "ClusterIP",
    headless: bool = False,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": service_type,
        "selector": names.selector_labels(cluster.name, component),
        "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
    }
    if port_name == "grpc":
        spec["ports"][0]["appProtocol"] = "grpc"
    if headless:
        spec["clusterIP"] = "None"
        spec["publishNotReadyAddresses"] = False
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(cluster, name, component),
        "spec": spec,
    }
