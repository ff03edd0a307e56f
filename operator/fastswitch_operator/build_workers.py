"""GPU workers: a StatefulSet (stable worker ids = pod names) behind a headless Service.

The scheduler finds workers through the headless Service's DNS name, which resolves to the
ready worker pods. Scale-down removes the highest ordinals: each gets SIGTERM, turns its
health NOT_SERVING (so it leaves the Service), stops taking admits and finishes or hands back
its requests, within terminationGracePeriodSeconds = spec.workers.drainTimeoutSeconds.
"""

from __future__ import annotations

import copy
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec

MODEL_MOUNT_PATH = "/models"
# Worker startup includes loading the checkpoint and allocating the KV cache.
WORKER_STARTUP_SECONDS = 900


def worker_args(cluster: ClusterSpec) -> list[str]:
    """`fastswitch worker` flags; `$(FASTSWITCH_POD_NAME)` is expanded by the kubelet."""
    workers, model = cluster.workers, cluster.model
    if model.preset is not None:
        model_arg = model.preset
    else:
        model_arg = f"{MODEL_MOUNT_PATH}/{model.pvc_path}".rstrip("/")
    args = ["worker", f"--model={model_arg}"]
    if model.dtype is not None:
        args.append(f"--dtype={model.dtype}")
    args += [
        f"--block-size={workers.block_size}",
        f"--kv-memory-fraction={workers.kv_memory_fraction:g}",
        f"--host-swap-bytes={workers.host_swap_bytes}",
        f"--kvstore-addr={names.kvstore_address(cluster.name, cluster.namespace)}",
        "--worker-id=$(FASTSWITCH_POD_NAME)",
    ]
    return args


def worker_resources(cluster: ClusterSpec) -> dict[str, Any]:
    """The user's resources plus the GPUs (extended resources go in limits, and requests)."""
    workers = cluster.workers
    resources = copy.deepcopy(workers.placement.resources)
    if workers.gpus > 0:
        for part in ("limits", "requests"):
            resources.setdefault(part, {})[workers.gpu_resource_name] = workers.gpus
    return resources


def build_workers_statefulset(cluster: ClusterSpec) -> dict[str, Any]:
    workers = cluster.workers
    name = names.workers_name(cluster.name)
    mounts: list[dict[str, Any]] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    # Pinned host memory and torch's shared-memory tensors need more than the default 64Mi.
    volumes: list[dict[str, Any]] = [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    if cluster.model.pvc_claim_name is not None:
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT_PATH, "readOnly": True})
        volumes.append({
            "name": "model",
            "persistentVolumeClaim": {"claimName": cluster.model.pvc_claim_name, "readOnly": True},
        })
    worker = pods.container(
        cluster,
        name=names.WORKER,
        image=cluster.images.worker,
        command=["fastswitch"],
        args=worker_args(cluster),
        port=names.WORKER_PORT,
        resources=worker_resources(cluster),
        env=[
            {"name": "FASTSWITCH_POD_NAME",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "HF_HUB_OFFLINE", "value": "1"},
        ],
        mounts=mounts,
    )
    worker.update(pods.grpc_probes(names.WORKER_PORT, startup_seconds=WORKER_STARTUP_SECONDS))
    pod_spec = pods.pod_spec(
        cluster,
        workers.placement,
        [worker],
        volumes=volumes,
        termination_grace_seconds=workers.drain_timeout_seconds,
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": pods.object_meta(cluster, name, names.WORKER),
        "spec": {
            "serviceName": name,
            "replicas": workers.replicas,
            # Workers are independent: start and drain them all at once, not one by one.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": names.selector_labels(cluster.name, names.WORKER)},
            "template": {
                "metadata": {"labels": names.labels(cluster.name, names.WORKER)},
                "spec": pod_spec,
            },
        },
    }


def build_workers_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(
        cluster, names.workers_name(cluster.name), names.WORKER, names.WORKER_PORT, headless=True
    )
