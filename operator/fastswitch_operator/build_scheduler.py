"""The scheduler, the cluster's control plane: one Deployment replica and an internal Service.

Clients never call it: the frontends do (placements and fairness over fastswitch.v1.Control),
presenting the cluster credential, which the scheduler asks of every caller but health checks.
"""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.build_config import (
    CONFIG_CHECKSUM_ANNOTATION,
    config_checksum,
    config_env_from,
    tenants_args,
    tenants_volume,
)
from fastswitch_operator.build_transport import (
    service_probes,
    transport_args,
    transport_env,
    transport_volume,
)
from fastswitch_operator.spec import ClusterSpec
from fastswitch_operator.spec_settings import settings_args

# Policy parameters in the spec -> `fastswitch scheduler` flags.
POLICY_FLAGS = {
    ("vtc", "preemptThreshold"): "--vtc-preempt-threshold",
    ("trace", "pattern"): "--trace-pattern",
    ("trace", "updateProbability"): "--trace-update-probability",
    ("trace", "seed"): "--trace-seed",
}


def scheduler_args(cluster: ClusterSpec) -> list[str]:
    """`fastswitch scheduler` flags (the kvstore and the log level come from the ConfigMap).

    No model: the scheduler sees token counts only, the frontends tokenize.
    """
    scheduler = cluster.scheduler
    args = [
        "scheduler",
        *pods.metrics_args(names.SCHEDULER),
        f"--listen=0.0.0.0:{names.SCHEDULER_PORT}",
        f"--workers={names.workers_address(cluster.name, cluster.namespace)}",
        f"--policy={scheduler.policy}",
        f"--tick-ms={scheduler.tick_ms}",
        f"--max-queued-requests={scheduler.max_queued_requests}",
        f"--max-queued-per-tenant={scheduler.max_queued_per_tenant}",
        f"--unroutable-timeout-s={scheduler.unroutable_timeout_seconds:g}",
    ]
    for key, value in sorted(scheduler.policy_params.items()):
        args.append(f"{POLICY_FLAGS[scheduler.policy, key]}={value}")
    args += settings_args(scheduler.settings)
    return args + tenants_args(cluster) + transport_args(cluster)


def build_scheduler_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    scheduler = cluster.scheduler
    name = names.scheduler_name(cluster.name)
    mounts, volumes = pods.joined_volumes(transport_volume(cluster), tenants_volume(cluster))
    container = pods.container(
        cluster,
        name=names.SCHEDULER,
        image=cluster.images.scheduler,
        command=["fastswitch"],
        args=scheduler_args(cluster),
        port=names.SCHEDULER_PORT,
        resources=scheduler.placement.resources,
        env=transport_env(cluster, names.SCHEDULER),
        env_from=config_env_from(cluster),
        mounts=mounts,
        metrics_port=names.METRICS_PORTS[names.SCHEDULER],
    )
    container.update(service_probes(cluster, names.SCHEDULER_PORT, startup_seconds=120))
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
                    "annotations": {CONFIG_CHECKSUM_ANNOTATION: config_checksum(cluster),
                                    **pods.scrape_annotations(cluster, names.SCHEDULER)},
                },
                "spec": pods.pod_spec(cluster, scheduler.placement, [container], volumes=volumes),
            },
        },
    }


def build_scheduler_service(cluster: ClusterSpec) -> dict[str, Any]:
    """Internal (ClusterIP): only the frontends call the scheduler."""
    return pods.service(cluster, names.scheduler_name(cluster.name), names.SCHEDULER,
                        names.SCHEDULER_PORT)
