"""The frontends: the APIs clients call (fastswitch.v1.Scheduler over gRPC, and the
OpenAI-compatible HTTP API), a Deployment of stateless replicas behind one Service, and, with
spec.frontend.autoscaling, the HorizontalPodAutoscaler that sizes it.

Each frontend authenticates tenants (the tenants file), tokenizes prompts (the model's
tokenizer, from the ConfigMap and the model's claim), keeps one control session with the
scheduler and streams tokens straight from the workers, presenting the cluster credential to
both. It reports SERVING once it is connected to the scheduler and a worker is ready, so a
frontend that cannot serve yet receives no clients.

Under autoscaling the Deployment carries no replica count: the autoscaler owns it, and a count
in the manifest would undo its every decision at the next reconcile.
"""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.build_config import (
    CONFIG_CHECKSUM_ANNOTATION,
    config_checksum,
    config_env_from,
    model_volume,
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

# The port opens at once (readiness then waits for the scheduler's session, a worker and the
# tokenizer): the startup probe only guards against a process that never gets that far.
FRONTEND_STARTUP_SECONDS = 120


def http_port(cluster: ClusterSpec) -> pods.NamedPort:
    """The OpenAI-compatible API's port, beside gRPC's: HTTPS when the frontends serve TLS
    (spec.tls), as they do on gRPC. Probes stay on gRPC health: one process serves both."""
    return pods.NamedPort(names.HTTP_PORT_NAME, names.FRONTEND_HTTP_PORT,
                          "https" if cluster.tls is not None else "http")


def frontend_args(cluster: ClusterSpec) -> list[str]:
    """`fastswitch frontend` flags (the model, for its tokenizer, comes from the ConfigMap).

    `$(FASTSWITCH_POD_NAME)` is expanded by the kubelet: the pod's name tells the scheduler
    (and the logs) which frontend owns a request.
    """
    return [
        "frontend",
        *pods.metrics_args(names.FRONTEND),
        f"--listen=0.0.0.0:{names.FRONTEND_PORT}",
        # Explicit, though the default: the port the container, Service and policy open.
        f"--http-port={names.FRONTEND_HTTP_PORT}",
        f"--scheduler-addr={names.scheduler_address(cluster.name, cluster.namespace)}",
        f"--frontend-name=$({pods.POD_NAME_ENV})",
        *tenants_args(cluster),
        *transport_args(cluster),
    ]


def build_frontend_deployment(cluster: ClusterSpec) -> dict[str, Any]:
    frontend = cluster.frontend
    name = names.frontend_name(cluster.name)
    mounts, volumes = pods.joined_volumes(model_volume(cluster), transport_volume(cluster),
                                          tenants_volume(cluster))
    container = pods.container(
        cluster,
        name=names.FRONTEND,
        image=cluster.images.frontend,
        command=["fastswitch"],
        args=frontend_args(cluster),
        port=names.FRONTEND_PORT,
        resources=frontend.placement.resources,
        env=[pods.pod_name_env(), *transport_env(cluster, names.FRONTEND)],
        env_from=config_env_from(cluster),
        mounts=mounts,
        extra_ports=[http_port(cluster)],
        metrics_port=names.METRICS_PORTS[names.FRONTEND],
    )
    container.update(service_probes(cluster, names.FRONTEND_PORT,
                                    startup_seconds=FRONTEND_STARTUP_SECONDS))
    spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector_labels(cluster.name, names.FRONTEND)},
        "template": {
            "metadata": {
                "labels": names.labels(cluster.name, names.FRONTEND),
                "annotations": {CONFIG_CHECKSUM_ANNOTATION: config_checksum(cluster),
                                **pods.scrape_annotations(cluster, names.FRONTEND)},
            },
            "spec": pods.pod_spec(cluster, frontend.placement, [container], volumes=volumes),
        },
    }
    if frontend.autoscaling is None:
        spec = {"replicas": frontend.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": pods.object_meta(cluster, name, names.FRONTEND),
        "spec": spec,
    }


def build_frontend_service(cluster: ClusterSpec) -> dict[str, Any]:
    """The Service clients call, gRPC and HTTP (spec.frontend.serviceType: LoadBalancer for
    callers outside)."""
    return pods.service(cluster, names.frontend_name(cluster.name), names.FRONTEND,
                        names.FRONTEND_PORT, extra_ports=[http_port(cluster)],
                        service_type=cluster.frontend.service_type)


def build_frontend_autoscaler(cluster: ClusterSpec) -> dict[str, Any] | None:
    """The HorizontalPodAutoscaler of spec.frontend.autoscaling (CPU utilization against the
    frontends' CPU requests), or None without it."""
    autoscaling = cluster.frontend.autoscaling
    if autoscaling is None:
        return None
    name = names.autoscaler_name(cluster.name, names.FRONTEND)
    target = {"type": "Utilization",
              "averageUtilization": autoscaling.target_cpu_utilization_percentage}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": pods.object_meta(cluster, name, names.FRONTEND),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": names.frontend_name(cluster.name)},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": target}}],
        },
    }
