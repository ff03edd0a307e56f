"""How each FastSwitch service container listens, calls and is probed: the cluster credential,
the TLS files of spec.tls, and health probes that still work once the ports speak TLS.

With spec.tls one kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt: what cert-manager
writes) is mounted into every service pod: each serves with it, verifies the others against
its ca.crt and, with `mutual`, requires their client certificates too. The kubelet's own gRPC
probe cannot speak TLS, so probes then run the images' `fastswitch-healthcheck`
(docker/healthcheck.py), which reads the same files from the FASTSWITCH_TLS_* variables and
checks the certificate against the name callers use (FASTSWITCH_TLS_SERVER_NAME), since the
certificate names the Service, not 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

from fastswitch_operator import names
from fastswitch_operator.build_secrets import cluster_token_env
from fastswitch_operator.spec import ClusterSpec

TLS_DIR = "/etc/fastswitch/tls"
TLS_VOLUME = "tls"
# Key names of a kubernetes.io/tls Secret (ca.crt is cert-manager's).
TLS_CERT, TLS_KEY, TLS_CA = "tls.crt", "tls.key", "ca.crt"
# Where the images install docker/healthcheck.py (docker/*.Dockerfile).
HEALTHCHECK = "/usr/local/bin/fastswitch-healthcheck"
# grpc.health.v1 service a worker reports SERVING while its engine loop makes progress
# (fastswitch.grpc_server.LIVENESS_SERVICE).
LIVENESS_SERVICE = "fastswitch.liveness"
# An exec probe starts a Python process that imports grpc, and a busy worker may answer its
# liveness question late: give both time rather than restart a healthy pod.
PATIENT_PROBE_TIMEOUT_SECONDS = 5


def transport_args(cluster: ClusterSpec) -> list[str]:
    """TLS flags of `fastswitch frontend|scheduler|worker|kvstore` (none without spec.tls).

    The frontends serve the clients with the same certificate, and with `mutual` require
    client certificates of them too, as every other port does.
    """
    if cluster.tls is None:
        return []
    args = [f"--tls-cert={TLS_DIR}/{TLS_CERT}", f"--tls-key={TLS_DIR}/{TLS_KEY}",
            f"--tls-ca={TLS_DIR}/{TLS_CA}"]
    if cluster.tls.mutual:
        args.append(f"--tls-client-ca={TLS_DIR}/{TLS_CA}")
    return args


def transport_env(cluster: ClusterSpec, component: str) -> list[dict[str, Any]]:
    """The cluster credential and, with TLS, the variables the healthcheck reads: the TLS files
    (which the services read too, and the flags repeat) and the name to verify."""
    env = [cluster_token_env(cluster)]
    if cluster.tls is None:
        return env
    files = {"FASTSWITCH_TLS_CA": TLS_CA, "FASTSWITCH_TLS_CERT": TLS_CERT,
             "FASTSWITCH_TLS_KEY": TLS_KEY}
    if cluster.tls.mutual:
        files["FASTSWITCH_TLS_CLIENT_CA"] = TLS_CA
    env += [{"name": name, "value": f"{TLS_DIR}/{file}"} for name, file in files.items()]
    server_name = names.component_host(cluster.name, cluster.namespace, component)
    env.append({"name": "FASTSWITCH_TLS_SERVER_NAME", "value": server_name})
    return env


def transport_volume(cluster: ClusterSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(mounts, volumes) of the TLS Secret, read-only; none without spec.tls.

    A directory mount (no subPath), so certificates cert-manager renews reach the pod.
    """
    if cluster.tls is None:
        return [], []
    return (
        [{"name": TLS_VOLUME, "mountPath": TLS_DIR, "readOnly": True}],
        [{"name": TLS_VOLUME,
          "secret": {"secretName": cluster.tls.secret_name, "defaultMode": 0o440}}],
    )


def health_action(cluster: ClusterSpec, port: int, service: str = "") -> dict[str, Any]:
    """A probe asking grpc.health.v1 for `service` ("" = the whole server): the kubelet's gRPC
    probe, or with TLS the images' healthcheck."""
    if cluster.tls is not None:
        command = ["python", HEALTHCHECK, str(port), *([service] if service else [])]
        return {"exec": {"command": command}, "timeoutSeconds": PATIENT_PROBE_TIMEOUT_SECONDS}
    return {"grpc": {"port": port, **({"service": service} if service else {})}}


def service_probes(cluster: ClusterSpec, port: int, *, startup_seconds: int) -> dict[str, Any]:
    """Probes of the frontends, the scheduler and the kvstore.

    Ready follows grpc.health.v1 (NOT_SERVING while starting, and while draining after SIGTERM,
    so a draining pod leaves its Services at once). Alive only needs the port to accept
    connections: a pod that is loading or draining must not be restarted for it.
    """
    return {
        "startupProbe": {
            "tcpSocket": {"port": port},
            "periodSeconds": 5,
            "failureThreshold": max(1, startup_seconds // 5),
        },
        "readinessProbe": {**health_action(cluster, port), "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10, "failureThreshold": 6},
    }


def worker_probes(cluster: ClusterSpec, *, startup_seconds: int) -> dict[str, Any]:
    """Probes of a worker: alive while its engine loop makes progress.

    Loading a checkpoint takes minutes, and the engine loop only runs after it: the startup
    probe asks the liveness service too, allowing `startup_seconds` for the load, and only
    once it has passed can a minute without progress (a hung GPU, a deadlock) restart the
    worker. Readiness is the whole server's health, which drops while the worker drains (the
    engine loop keeps moving then, so a draining worker stays alive).
    """
    port = names.WORKER_PORT
    liveness = {**health_action(cluster, port, LIVENESS_SERVICE),
                "timeoutSeconds": PATIENT_PROBE_TIMEOUT_SECONDS}
    return {
        "startupProbe": {**liveness, "periodSeconds": 10,
                         "failureThreshold": max(1, startup_seconds // 10)},
        "readinessProbe": {**health_action(cluster, port), "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {**liveness, "periodSeconds": 10, "failureThreshold": 6},
    }
