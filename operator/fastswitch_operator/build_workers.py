"""GPU workers: a StatefulSet (stable worker ids = pod names) behind a headless Service.

The scheduler finds workers through the headless Service's DNS name, which resolves to the
ready worker pods, and tells the frontends where each one is (they stream tokens straight
from the workers). Scale-down removes the highest ordinals. Each gets SIGTERM, reports
NOT_SERVING (leaving the Service), refuses new admits, and lets its running requests finish
for up to spec.workers.drainTimeoutSeconds before handing the rest back to the scheduler,
which moves them to other workers; terminationGracePeriodSeconds leaves room for all of it.
"""

from __future__ import annotations

import copy
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.build_config import (
    CONFIG_CHECKSUM_ANNOTATION,
    config_checksum,
    config_env_from,
    model_volume,
)
from fastswitch_operator.build_transport import (
    transport_args,
    transport_env,
    transport_volume,
    worker_probes,
)
from fastswitch_operator.spec import ClusterSpec
from fastswitch_operator.spec_settings import settings_args

# Loading the checkpoint and allocating the KV cache happen before SERVING: the startup probe
# allows this long before the liveness probe may restart a worker.
WORKER_STARTUP_SECONDS = 900
# After the drain: handing back what did not finish, and stopping the server and engine.
DRAIN_MARGIN_SECONDS = 15


def worker_args(cluster: ClusterSpec) -> list[str]:
    """`fastswitch worker` flags (the model and kvstore come from the shared ConfigMap).

    `$(FASTSWITCH_POD_NAME)` is expanded by the kubelet: the pod's name is the worker's id and,
    under the headless Service, its stable address.
    """
    workers, model = cluster.workers, cluster.model
    service = names.service_host(names.workers_name(cluster.name), cluster.namespace)
    args = [
        "worker",
        *pods.metrics_args(names.WORKER),
        f"--worker-id=$({pods.POD_NAME_ENV})",
        f"--advertise-address=$({pods.POD_NAME_ENV}).{service}:{names.WORKER_PORT}",
        f"--mode={workers.mode}",
        f"--block-size={workers.block_size}",
        f"--gpu-memory-fraction={workers.kv_memory_fraction:g}",
        f"--host-kv-bytes={workers.host_swap_bytes}",
        f"--drain-timeout-s={workers.drain_timeout_seconds}",
    ]
    if model.dtype is not None:
        args.append(f"--dtype={model.dtype}")
    if model.dummy_weights:
        args.append("--load-format=dummy")
    return args + settings_args(workers.settings) + transport_args(cluster)


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
    model_mounts, model_volumes = model_volume(cluster)
    tls_mounts, tls_volumes = transport_volume(cluster)
    worker = pods.container(
        cluster,
        name=names.WORKER,
        image=cluster.images.worker,
        command=["fastswitch"],
        args=worker_args(cluster),
        port=names.WORKER_PORT,
        resources=worker_resources(cluster),
        env=[pods.pod_name_env(), *transport_env(cluster, names.WORKER)],
        env_from=config_env_from(cluster),
        # Pinned host memory and torch's shared-memory tensors need more than 64Mi of /dev/shm.
        mounts=[{"name": "dshm", "mountPath": "/dev/shm"}, *model_mounts, *tls_mounts],
        metrics_port=names.METRICS_PORTS[names.WORKER],
    )
    worker.update(worker_probes(cluster, startup_seconds=WORKER_STARTUP_SECONDS))
    pod_spec = pods.pod_spec(
        cluster,
        workers.placement,
        [worker],
        volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory"}}, *model_volumes,
                 *tls_volumes],
        termination_grace_seconds=workers.drain_timeout_seconds + DRAIN_MARGIN_SECONDS,
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
                "metadata": {
                    "labels": names.labels(cluster.name, names.WORKER),
                    "annotations": {CONFIG_CHECKSUM_ANNOTATION: config_checksum(cluster),
                                    **pods.scrape_annotations(cluster, names.WORKER)},
                },
                "spec": pod_spec,
            },
        },
    }


def build_workers_service(cluster: ClusterSpec) -> dict[str, Any]:
    return pods.service(
        cluster, names.workers_name(cluster.name), names.WORKER, names.WORKER_PORT, headless=True
    )
