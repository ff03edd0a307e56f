"""The frontends' Deployment, the Service clients call and the autoscaler, built as pure
functions."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fastswitch_operator import names
from fastswitch_operator.build_frontend import (
    build_frontend_autoscaler,
    build_frontend_deployment,
    build_frontend_service,
)
from fastswitch_operator.build_scheduler import build_scheduler_deployment
from fastswitch_operator.build_transport import HEALTHCHECK
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "fastswitch/frontend:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(model=None, scheduler=None, **frontend):
    spec = {"model": model or {"preset": "tiny"}, "frontend": frontend,
            "scheduler": scheduler or {}}
    return parse_spec("demo", "team-a", spec, IMAGES)


def cluster_with_tls(mutual):
    spec = {"model": {"preset": "tiny"}, "tls": {"secretName": "certs", "mutual": mutual}}
    return parse_spec("demo", "team-a", spec, IMAGES)


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(deployment):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(deployment)["env"]}


def test_frontends_serve_clients_and_call_the_scheduler_service():
    deployment = build_frontend_deployment(cluster())
    assert container(deployment)["image"] == "fastswitch/frontend:1"
    assert container(deployment)["command"] == ["fastswitch"]
    assert container(deployment)["args"] == [
        "frontend",
        "--metrics-port=9400",
        "--listen=0.0.0.0:50051",
        "--http-port=8000",
        "--scheduler-addr=demo-scheduler.team-a.svc:50052",
        "--frontend-name=$(FASTSWITCH_POD_NAME)",
    ]
    assert container(deployment)["ports"] == [
        {"name": "grpc", "containerPort": 50051, "protocol": "TCP"},
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]


def test_the_openai_api_listens_on_the_port_the_container_names_http():
    deployment = build_frontend_deployment(cluster())
    assert f"--http-port={names.FRONTEND_HTTP_PORT}" in container(deployment)["args"]
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert ports[names.HTTP_PORT_NAME] == names.FRONTEND_HTTP_PORT == 8000


def test_each_frontend_is_named_after_its_pod():
    assert env_of(build_frontend_deployment(cluster()))["FASTSWITCH_POD_NAME"] == {
        "fieldRef": {"fieldPath": "metadata.name"}}


def test_frontends_present_the_cluster_credential_to_the_scheduler_and_workers():
    assert env_of(build_frontend_deployment(cluster()))["FASTSWITCH_CLUSTER_TOKEN"] == {
        "secretKeyRef": {"name": "demo-cluster-token", "key": "token"}}


def test_frontends_read_the_tokenizers_model_from_the_shared_configmap():
    deployment = build_frontend_deployment(cluster(model={"pvc": {"claimName": "models"}}))
    assert container(deployment)["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["model"] == {"name": "model", "mountPath": "/models", "readOnly": True}
    # A changed ConfigMap rolls the frontends, as it rolls the scheduler.
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    scheduler = build_scheduler_deployment(cluster(model={"pvc": {"claimName": "models"}}))
    assert annotations == scheduler["spec"]["template"]["metadata"]["annotations"]


def test_frontends_authenticate_tenants_with_the_schedulers_tenants_secret():
    built = cluster(scheduler={"tenantsSecret": {"name": "tokens", "key": "t.json"}})
    deployment = build_frontend_deployment(built)
    assert "--tenants-file=/etc/fastswitch/tenants/t.json" in container(deployment)["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tenants"]["secret"] == {"secretName": "tokens", "defaultMode": 0o440}
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["tenants"] == {"name": "tenants", "mountPath": "/etc/fastswitch/tenants",
                                 "readOnly": True}
    # The very same mount as the scheduler's: one file, two readers.
    scheduler = container(build_scheduler_deployment(built))
    assert {"name": "tenants", "mountPath": "/etc/fastswitch/tenants",
            "readOnly": True} in scheduler["volumeMounts"]


def test_frontends_are_ready_only_when_serving_and_alive_while_their_port_answers():
    probes = container(build_frontend_deployment(cluster()))
    assert probes["readinessProbe"]["grpc"] == {"port": names.FRONTEND_PORT}
    assert probes["livenessProbe"]["tcpSocket"] == {"port": names.FRONTEND_PORT}
    assert probes["startupProbe"]["tcpSocket"] == {"port": names.FRONTEND_PORT}


def test_tls_frontends_serve_the_certificate_and_probe_through_the_healthcheck():
    deployment = build_frontend_deployment(cluster_with_tls(mutual=True))
    args = container(deployment)["args"]
    assert args[-4:] == ["--tls-cert=/etc/fastswitch/tls/tls.crt",
                         "--tls-key=/etc/fastswitch/tls/tls.key",
                         "--tls-ca=/etc/fastswitch/tls/ca.crt",
                         "--tls-client-ca=/etc/fastswitch/tls/ca.crt"]
    env = env_of(deployment)
    assert env["FASTSWITCH_TLS_SERVER_NAME"] == "demo-frontend.team-a.svc"
    readiness = container(deployment)["readinessProbe"]
    assert readiness["exec"]["command"] == ["python", HEALTHCHECK, str(names.FRONTEND_PORT)]


def test_frontends_default_to_two_replicas_with_cpu_requests():
    deployment = build_frontend_deployment(cluster())
    assert deployment["spec"]["replicas"] == 2
    assert container(deployment)["resources"] == {"requests": {"cpu": "500m", "memory": "512Mi"}}
    assert build_frontend_autoscaler(cluster()) is None


def test_replicas_and_resources_follow_the_spec():
    built = cluster(replicas=5, resources={"requests": {"cpu": "2"}, "limits": {"memory": "2Gi"}},
                    nodeSelector={"pool": "cpu"})
    deployment = build_frontend_deployment(built)
    assert deployment["spec"]["replicas"] == 5
    assert container(deployment)["resources"] == {"requests": {"cpu": "2"},
                                                  "limits": {"memory": "2Gi"}}
    assert deployment["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "cpu"}


def test_under_autoscaling_the_autoscaler_owns_the_replica_count():
    built = cluster(replicas=3, autoscaling={"minReplicas": 2, "maxReplicas": 10,
                                             "targetCPUUtilizationPercentage": 60})
    assert "replicas" not in build_frontend_deployment(built)["spec"]
    autoscaler = build_frontend_autoscaler(built)
    assert autoscaler["apiVersion"] == "autoscaling/v2"
    assert autoscaler["metadata"]["name"] == names.autoscaler_name("demo", names.FRONTEND)
    assert autoscaler["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                           "name": "demo-frontend"},
        "minReplicas": 2,
        "maxReplicas": 10,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}],
    }


def test_autoscaling_defaults_are_the_autoscalers_own():
    autoscaler = build_frontend_autoscaler(cluster(autoscaling={"maxReplicas": 4}))
    assert autoscaler["spec"]["minReplicas"] == 1
    target = autoscaler["spec"]["metrics"][0]["resource"]["target"]
    assert target["averageUtilization"] == 80


@pytest.mark.parametrize(("frontend", "service_type"), [
    ({}, "ClusterIP"),
    ({"serviceType": "LoadBalancer"}, "LoadBalancer"),
])
def test_the_service_clients_call_is_the_frontends(frontend, service_type):
    service = build_frontend_service(cluster(**frontend))
    assert service["metadata"]["name"] == "demo-frontend"
    assert service["spec"]["type"] == service_type
    assert service["spec"]["selector"] == names.selector_labels("demo", names.FRONTEND)
    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 50051, "targetPort": "grpc", "protocol": "TCP",
         "appProtocol": "grpc"},
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP",
         "appProtocol": "http"}]


def test_every_service_port_targets_a_port_the_frontends_serve():
    served = {p["name"] for p in container(build_frontend_deployment(cluster()))["ports"]}
    targets = {p["targetPort"] for p in build_frontend_service(cluster())["spec"]["ports"]}
    assert targets == {"grpc", "http"}
    assert targets <= served


def test_with_tls_the_openai_api_is_https():
    (_, http) = build_frontend_service(cluster_with_tls(mutual=False))["spec"]["ports"]
    assert (http["name"], http["port"], http["appProtocol"]) == ("http", 8000, "https")


def test_the_old_scheduler_service_type_now_types_the_frontends_service():
    old = cluster(scheduler={"serviceType": "NodePort"})
    assert build_frontend_service(old)["spec"]["type"] == "NodePort"
    both = cluster(scheduler={"serviceType": "ClusterIP"}, serviceType="LoadBalancer")
    assert build_frontend_service(both)["spec"]["type"] == "LoadBalancer"


@pytest.mark.parametrize("tls", [None, {"secretName": "certs", "mutual": True}])
def test_manifests_validate_strictly(tls):
    spec = {"model": {"pvc": {"claimName": "models"}},
            "scheduler": {"tenantsSecret": {"name": "tokens"}},
            "frontend": {"autoscaling": {"maxReplicas": 5}, "tolerations": [
                {"key": "cpu", "operator": "Exists", "effect": "NoSchedule"}]}}
    if tls:
        spec["tls"] = tls
    built = parse_spec("demo", "team-a", spec, IMAGES)
    for manifest in (build_frontend_deployment(built), build_frontend_service(built),
                     build_frontend_autoscaler(built)):
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
