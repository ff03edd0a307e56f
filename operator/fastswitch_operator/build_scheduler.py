"""The scheduler: a Deployment, the Service clients call, and a ConfigMap of policy parameters."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec

POLICY_DIR = "/etc/fastswitch/policy"
POLICY_FILE = "policy.json"
TENANTS_DIR = "/etc/fastswitch/tenants"
# Rolls the scheduler's pods when the ConfigMap changes (pods do not reread it).
POLICY_CHECKSUM_ANNOTATION = "fastswitch.io/policy-checksum"


def policy_document(cluster: ClusterSpec) -> str:
    """The policy and its parameters, as the scheduler reads them from $FASTSWITCH_POLICY_CONFIG."""
    scheduler = cluster.scheduler
    document = {
        "policy": scheduler.policy,
        "tickMs": scheduler.tick_ms,
        "params": scheduler.policy_params,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def scheduler_args(cluster: ClusterSpec) -> list[str]:
    scheduler = cluster.scheduler
    args = [
        "scheduler",
        f"--policy={scheduler.policy}",
        f"--tick-ms={scheduler.tick_ms}",
        f"--workers={names.workers_address(cluster.name, cluster.namespace)}",
        f"--kvstore-addr={names.kvstore_address(cluster.name, cluster.namespace)}",
    ]
    if scheduler.tenants_secret is not None:
        args.append(f"--tenants-file={TENANTS_DIR}/{scheduler.tenants_secret.key}")
    return args


def build_scheduler_configmap(cluster: ClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": pods.object_meta(
            cluster, names.scheduler_config_name(cluster.name), names.SCHEDULER
        ),
        "data": {POLICY_FILE: policy_document(cluster)},
    }


def build_scheduler_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    scheduler = cluster.scheduler
    name = names.scheduler_name(cluster.name)
    mounts: list[dict[str, Any]] = [{"name": "policy", "mountPath": POLICY_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [
        {"name": "policy", "configMap": {"name": names.scheduler_config_name(cluster.name)}}
    ]
    if scheduler.tenants_secret is not None:
        # A directory mount (no subPath) so rotated tokens reach the running scheduler.
        mounts.append({"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True})
        volumes.append({
            "name": "tenants",
            "secret": {"secretName": scheduler.tenants_secret.name, "defaultMode": 0o440},
        })
    container = pods.container(
        cluster,
        name=names.SCHEDULER,
        image=cluster.images.scheduler,
        command=["fastswitch"],
        args=scheduler_args(cluster),
        port=names.SCHEDULER_PORT,
        resources=scheduler.placement.resources,
        env=[{"name": "FASTSWITCH_POLICY_CONFIG", "value": f"{POLICY_DIR}/{POLICY_FILE}"}],
        mounts=mounts,
    )
    container.update(pods.grpc_probes(names.SCHEDULER_PORT, startup_seconds=120))
    checksum = hashlib.sha256(policy_document(cluster).encode()).hexdigest()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.object_meta(cluster, name, names.SCHEDULER),
        "spec": {
            "replicas": scheduler.replicas,
            "selector": {"matchLabels": names.selector_labels(cluster.name, names.SCHEDULER)},
            "template": {
                "metadata": {
                    "labels": names.labels(cluster.name, names.SCHEDULER),
                    "annotations": {POLICY_CHECKSUM_ANNOTATION: checksum},
                },
                "spec": pods.pod_spec(cluster, scheduler.placement, [container], volumes=volumes),
            },
        },
    }


def build_scheduler_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(
        cluster,
        names.scheduler_name(cluster.name),
        names.SCHEDULER,
        names.SCHEDULER_PORT,
        service_type=cluster.scheduler.service_type,
    )
