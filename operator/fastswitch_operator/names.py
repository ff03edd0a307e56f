"""The resource the operator serves, and every child name, label and address it builds.

Each child name is built here and only here, so the builders, the status and the tests agree.
"""

from __future__ import annotations

GROUP = "fastswitch.io"
VERSION = "v1alpha1"
PLURAL = "fastswitchclusters"
KIND = "FastSwitchCluster"
API_VERSION = f"{GROUP}/{VERSION}"

MANAGED_BY = "fastswitch-operator"
APP_NAME = "fastswitch"

# Components, as in the `app.kubernetes.io/component` label.
WORKER = "worker"
FRONTEND = "frontend"
SCHEDULER = "scheduler"
KVSTORE = "kvstore"
REDIS = "redis"
CONFIG = "config"  # the shared ConfigMap: no pods, no selector
CREDENTIALS = "credentials"  # the generated Secrets' label (Redis's password is REDIS's)
COMPONENTS = (WORKER, FRONTEND, SCHEDULER, KVSTORE, REDIS)

# gRPC ports served by `fastswitch frontend|scheduler|worker|kvstore`, and Redis. Clients call
# the frontends on 50051 (the port they called the scheduler on before frontends existed); the
# scheduler's 50052 is internal, for frontends only.
FRONTEND_PORT = 50051
SCHEDULER_PORT = 50052
WORKER_PORT = 50061
KVSTORE_PORT = 50071
REDIS_PORT = 6379
# The frontends' OpenAI-compatible HTTP API (`fastswitch frontend --http-port`), beside their
# gRPC port: a container and Service port named "http" (HTTPS with spec.tls, as gRPC is TLS).
FRONTEND_HTTP_PORT = 8000
HTTP_PORT_NAME = "http"
# Prometheus /metrics of each service (`--metrics-port`), on a container port named "metrics".
METRICS_PORT_NAME = "metrics"
METRICS_PATH = "/metrics"
METRICS_PORTS = {FRONTEND: 9400, SCHEDULER: 9401, WORKER: 9402, KVSTORE: 9403}

# Service names are DNS labels (63 characters) and a StatefulSet's name must leave room for the
# revision hash its pods carry in a label (52 characters): "-workers", "-frontend" and
# "-scheduler" fit behind 40. The CRD enforces the same limit.
MAX_CLUSTER_NAME_LENGTH = 40


def workers_name(cluster: str) -> str:
    """The worker StatefulSet and its headless Service (pods are `<this>-<ordinal>`)."""
    return f"{cluster}-workers"


def frontend_name(cluster: str) -> str:
    """The frontend Deployment and the Service clients call."""
    return f"{cluster}-frontend"


def scheduler_name(cluster: str) -> str:
    """The scheduler Deployment and its Service (internal: the frontends call it)."""
    return f"{cluster}-scheduler"


def config_name(cluster: str) -> str:
    """The ConfigMap of settings the frontends, the scheduler and the workers share."""
    return f"{cluster}-config"


def kvstore_name(cluster: str) -> str:
    """The kvstore Deployment and its Service."""
    return f"{cluster}-kvstore"


def redis_name(cluster: str) -> str:
    """The Redis Deployment and Service the operator runs when no external Redis is given."""
    return f"{cluster}-redis"


def cluster_token_name(cluster: str) -> str:
    """The Secret holding the credential the cluster's own components present to each other."""
    return f"{cluster}-cluster-token"


def redis_password_name(cluster: str) -> str:
    """The Secret holding the password of the Redis the operator runs."""
    return f"{cluster}-redis"


def workload_name(cluster: str, component: str) -> str:
    """A component's workload and Service, by component (names.WORKER, ...)."""
    workloads = {WORKER: workers_name, FRONTEND: frontend_name, SCHEDULER: scheduler_name,
                 KVSTORE: kvstore_name, REDIS: redis_name}
    return workloads[component](cluster)


def network_policy_name(cluster: str, component: str) -> str:
    """The NetworkPolicy guarding a component's pods: named after its workload."""
    return workload_name(cluster, component)


def autoscaler_name(cluster: str, component: str) -> str:
    """The HorizontalPodAutoscaler of a component's workload: named after the workload."""
    return workload_name(cluster, component)


def selector_labels(cluster: str, component: str) -> dict[str, str]:
    """Labels that select a component's pods; never change them on live objects."""
    return {
        "app.kubernetes.io/name": APP_NAME,
        "app.kubernetes.io/instance": cluster,
        "app.kubernetes.io/component": component,
    }


def labels(cluster: str, component: str) -> dict[str, str]:
    """Recommended labels for every child object and pod."""
    return {
        **selector_labels(cluster, component),
        "app.kubernetes.io/part-of": APP_NAME,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def label_selector(cluster: str, component: str) -> str:
    """`selector_labels` as the string form the scale subresource and kubectl use."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(cluster, component).items())


def service_host(name: str, namespace: str) -> str:
    """A Service's in-cluster DNS name (the cluster domain comes from the pod's search path)."""
    return f"{name}.{namespace}.svc"


def component_host(cluster: str, namespace: str, component: str) -> str:
    """The DNS name callers use for a component: what its TLS certificate must name."""
    return service_host(workload_name(cluster, component), namespace)


def frontend_address(cluster: str, namespace: str) -> str:
    """What clients call inside the Kubernetes cluster (the frontends' Service)."""
    return f"{service_host(frontend_name(cluster), namespace)}:{FRONTEND_PORT}"


def scheduler_address(cluster: str, namespace: str) -> str:
    return f"{service_host(scheduler_name(cluster), namespace)}:{SCHEDULER_PORT}"


def kvstore_address(cluster: str, namespace: str) -> str:
    return f"{service_host(kvstore_name(cluster), namespace)}:{KVSTORE_PORT}"


def workers_address(cluster: str, namespace: str) -> str:
    """The headless Service: its DNS name resolves to every ready worker pod."""
    return f"{service_host(workers_name(cluster), namespace)}:{WORKER_PORT}"


def redis_url(cluster: str, namespace: str, password_env: str) -> str:
    """The managed Redis's URL, its password taken from the variable `password_env` (which the
    kubelet expands in env values: the password itself never appears in the pod spec)."""
    return (f"redis://:$({password_env})@{service_host(redis_name(cluster), namespace)}"
            f":{REDIS_PORT}/0")
