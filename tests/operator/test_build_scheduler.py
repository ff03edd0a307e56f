"""The scheduler (the control plane) Deployment and its internal Service, built as pure
functions."""

from __future__ import annotations

import kubernetes_validate

from fastswitch_operator import names
from fastswitch_operator.build_scheduler import build_scheduler_deployment, build_scheduler_service
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "fastswitch/scheduler:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(model=None, **scheduler):
    spec = {"model": model or {"preset": "tiny"}, "scheduler": scheduler}
    return parse_spec("demo", "team-a", spec, IMAGES)


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_scheduler_flags_point_at_the_workers_headless_service():
    deployment = build_scheduler_deployment(cluster(policy="fcfs", tickMs=25))
    assert container(deployment)["command"] == ["fastswitch"]
    assert container(deployment)["args"] == [
        "scheduler",
        "--metrics-port=9401",
        "--listen=0.0.0.0:50052",
        "--workers=demo-workers.team-a.svc:50061",
        "--policy=fcfs",
        "--tick-ms=25",
        "--max-queued-requests=10000",
        "--max-queued-per-tenant=2000",
        "--unroutable-timeout-s=30",
    ]
    assert container(deployment)["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]


def test_queue_caps_and_the_unroutable_timeout_become_flags():
    args = container(build_scheduler_deployment(cluster(
        maxQueuedRequests=500, maxQueuedPerTenant=50, unroutableTimeoutSeconds=2.5)))["args"]
    assert {"--max-queued-requests=500", "--max-queued-per-tenant=50",
            "--unroutable-timeout-s=2.5"} <= set(args)


def test_scheduler_presents_the_cluster_credential_to_workers_and_kvstore():
    (env,) = container(build_scheduler_deployment(cluster()))["env"]
    assert env == {"name": "FASTSWITCH_CLUSTER_TOKEN",
                   "valueFrom": {"secretKeyRef": {"name": "demo-cluster-token", "key": "token"}}}


def test_policy_parameters_become_flags():
    vtc = build_scheduler_deployment(cluster(policy="vtc", vtc={"preemptThreshold": 128}))
    assert "--vtc-preempt-threshold=128" in container(vtc)["args"]
    trace = build_scheduler_deployment(cluster(
        policy="trace", trace={"pattern": "random", "updateProbability": 0.1, "seed": 7}))
    assert container(trace)["args"][-3:] == [
        "--trace-pattern=random", "--trace-seed=7", "--trace-update-probability=0.1"]


def test_tenants_come_from_a_mounted_secret():
    deployment = build_scheduler_deployment(cluster(tenantsSecret={"name": "tokens"}))
    assert "--tenants-file=/etc/fastswitch/tenants/tenants.json" in container(deployment)["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tenants"]["secret"]["secretName"] == "tokens"
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["tenants"] == {"name": "tenants", "mountPath": "/etc/fastswitch/tenants",
                                 "readOnly": True}


def test_the_scheduler_needs_no_model_the_frontends_tokenize():
    deployment = build_scheduler_deployment(cluster(model={"pvc": {"claimName": "models"}}))
    assert "model" not in {m["name"] for m in container(deployment)["volumeMounts"]}
    assert "model" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def test_the_scheduler_service_is_internal_and_one_scheduler_owns_the_workers():
    # serviceType is the old name of the frontends' Service type: clients call them now.
    built = cluster(serviceType="LoadBalancer")
    assert build_scheduler_deployment(built)["spec"]["replicas"] == 1
    service = build_scheduler_service(built)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 50052, "targetPort": "grpc",
                                         "protocol": "TCP", "appProtocol": "grpc"}]
    assert container(build_scheduler_deployment(built))["ports"][0]["containerPort"] == 50052


def test_scheduler_is_ready_only_when_serving():
    probes = container(build_scheduler_deployment(cluster()))
    assert probes["readinessProbe"]["grpc"] == {"port": names.SCHEDULER_PORT}
    assert "tcpSocket" in probes["livenessProbe"]


def test_manifests_validate_strictly():
    built = cluster(tenantsSecret={"name": "tokens"}, nodeSelector={"pool": "cpu"},
                    resources={"requests": {"cpu": "500m", "memory": "1Gi"}},
                    model={"pvc": {"claimName": "models"}})
    for manifest in (build_scheduler_deployment(built), build_scheduler_service(built)):
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
