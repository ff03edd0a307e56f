"""What every service container gets for transport security: the cluster credential, the TLS
Secret of spec.tls, and probes that still work once the ports speak TLS."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fastswitch_operator import names
from fastswitch_operator.build_frontend import build_frontend_deployment
from fastswitch_operator.build_kvstore import build_kvstore_deployment, build_redis_deployment
from fastswitch_operator.build_scheduler import build_scheduler_deployment
from fastswitch_operator.build_transport import HEALTHCHECK, LIVENESS_SERVICE
from fastswitch_operator.build_workers import build_workers_statefulset
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
# component -> (builder, port, the name its certificate must carry)
SERVICES = {
    names.WORKER: (build_workers_statefulset, names.WORKER_PORT, "demo-workers.team-a.svc"),
    names.FRONTEND: (build_frontend_deployment, names.FRONTEND_PORT, "demo-frontend.team-a.svc"),
    names.SCHEDULER: (build_scheduler_deployment, names.SCHEDULER_PORT, "demo-scheduler.team-a.svc"),
    names.KVSTORE: (build_kvstore_deployment, names.KVSTORE_PORT, "demo-kvstore.team-a.svc"),
}
TLS_ARGS = ["--tls-cert=/etc/fastswitch/tls/tls.crt", "--tls-key=/etc/fastswitch/tls/tls.key",
            "--tls-ca=/etc/fastswitch/tls/ca.crt"]


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def pod_and_container(workload):
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("component", SERVICES)
def test_every_service_reads_the_cluster_credential_from_the_generated_secret(component):
    build, _, _ = SERVICES[component]
    _, container = pod_and_container(build(cluster()))
    assert env_of(container)["FASTSWITCH_CLUSTER_TOKEN"] == {
        "secretKeyRef": {"name": names.cluster_token_name("demo"), "key": "token"}}


def test_redis_never_sees_the_cluster_credential():
    _, redis = pod_and_container(build_redis_deployment(cluster()))
    assert "FASTSWITCH_CLUSTER_TOKEN" not in env_of(redis)


@pytest.mark.parametrize("component", SERVICES)
def test_without_tls_nothing_is_mounted_and_the_kubelet_probes_grpc(component):
    build, port, _ = SERVICES[component]
    pod, container = pod_and_container(build(cluster()))
    assert not [arg for arg in container["args"] if arg.startswith("--tls")]
    assert "tls" not in {v["name"] for v in pod["volumes"]}
    assert not [name for name in env_of(container) if name.startswith("FASTSWITCH_TLS")]
    assert container["readinessProbe"]["grpc"] == {"port": port}


@pytest.mark.parametrize("component", SERVICES)
def test_tls_mounts_the_secret_read_only_and_passes_its_files(component):
    build, _, server_name = SERVICES[component]
    pod, container = pod_and_container(build(cluster(tls={"secretName": "fastswitch-tls"})))
    assert container["args"][-3:] == TLS_ARGS
    assert not [arg for arg in container["args"] if arg.startswith("--tls-client-ca")]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "fastswitch-tls"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/etc/fastswitch/tls", "readOnly": True}
    assert "subPath" not in mounts["tls"]  # renewed certificates reach the pod
    env = env_of(container)
    assert env["FASTSWITCH_TLS_SERVER_NAME"] == server_name
    assert env["FASTSWITCH_TLS_CA"] == "/etc/fastswitch/tls/ca.crt"


@pytest.mark.parametrize("component", SERVICES)
def test_mutual_tls_makes_servers_require_client_certificates(component):
    build, _, _ = SERVICES[component]
    _, container = pod_and_container(build(cluster(tls={"secretName": "t", "mutual": True})))
    assert container["args"][-4:] == [*TLS_ARGS, "--tls-client-ca=/etc/fastswitch/tls/ca.crt"]


@pytest.mark.parametrize("component", SERVICES)
def test_tls_probes_run_the_images_healthcheck(component):
    build, port, _ = SERVICES[component]
    _, container = pod_and_container(build(cluster(tls={"secretName": "t"})))
    readiness = container["readinessProbe"]
    assert readiness["exec"]["command"] == ["python", HEALTHCHECK, str(port)]
    assert readiness["timeoutSeconds"] >= 3  # a Python start, not a kubelet call
    assert "grpc" not in readiness


def test_tls_worker_liveness_asks_the_liveness_service():
    _, worker = pod_and_container(build_workers_statefulset(cluster(tls={"secretName": "t"})))
    command = ["python", HEALTHCHECK, str(names.WORKER_PORT), LIVENESS_SERVICE]
    assert worker["livenessProbe"]["exec"]["command"] == command
    assert worker["startupProbe"]["exec"]["command"] == command


def test_the_managed_redis_stays_plaintext_behind_its_password():
    _, redis = pod_and_container(build_redis_deployment(cluster(tls={"secretName": "t"})))
    assert "tls" not in {m["name"] for m in redis["volumeMounts"]}
    assert "tcpSocket" in redis["readinessProbe"]


@pytest.mark.parametrize("mutual", [False, True])
def test_tls_manifests_validate_strictly(mutual):
    built = cluster(tls={"secretName": "fastswitch-tls", "mutual": mutual},
                    scheduler={"tenantsSecret": {"name": "tenants"}},
                    model={"pvc": {"claimName": "models"}})
    for build, _, _ in SERVICES.values():
        kubernetes_validate.validate(build(built), "1.30.0", strict=True)
