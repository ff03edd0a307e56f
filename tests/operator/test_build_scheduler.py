"""The scheduler Deployment, Service and policy ConfigMap, built as pure functions."""

from __future__ import annotations

import json

import kubernetes_validate

from fastswitch_operator import names
from fastswitch_operator.build_scheduler import (
    POLICY_CHECKSUM_ANNOTATION,
    build_scheduler_configmap,
    build_scheduler_deployment,
    build_scheduler_service,
)
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "fastswitch/scheduler:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(**scheduler):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, "scheduler": scheduler}, IMAGES)


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_scheduler_flags_point_at_the_workers_and_kvstore():
    deployment = build_scheduler_deployment(cluster(policy="fcfs", tickMs=25))
    assert container(deployment)["args"] == [
        "scheduler",
        "--policy=fcfs",
        "--tick-ms=25",
        "--workers=demo-workers.team-a.svc:50061",
        "--kvstore-addr=demo-kvstore.team-a.svc:50071",
    ]


def test_tenants_come_from_a_mounted_secret():
    deployment = build_scheduler_deployment(cluster(tenantsSecret={"name": "tokens", "key": "t.yaml"}))
    assert "--tenants-file=/etc/fastswitch/tenants/t.yaml" in container(deployment)["args"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tenants"]["secret"]["secretName"] == "tokens"
    mounts = {m["name"]: m for m in container(deployment)["volumeMounts"]}
    assert mounts["tenants"] == {"name": "tenants", "mountPath": "/etc/fastswitch/tenants",
                                 "readOnly": True}


def test_policy_parameters_live_in_the_configmap():
    configmap = build_scheduler_configmap(cluster(policy="vtc", vtc={"preemptThresholdTokens": 256}))
    assert configmap["metadata"]["name"] == names.scheduler_config_name("demo")
    assert json.loads(configmap["data"]["policy.json"]) == {
        "policy": "vtc", "tickMs": 10, "params": {"preemptThresholdTokens": 256}
    }
    env = {e["name"]: e.get("value") for e in container(build_scheduler_deployment(cluster()))["env"]}
    assert env["FASTSWITCH_POLICY_CONFIG"] == "/etc/fastswitch/policy/policy.json"


def test_changing_policy_parameters_rolls_the_scheduler():
    def checksum(built):
        return build_scheduler_deployment(built)["spec"]["template"]["metadata"]["annotations"][
            POLICY_CHECKSUM_ANNOTATION]

    base = checksum(cluster(policy="trace", trace={"pattern": "random"}))
    assert checksum(cluster(policy="trace", trace={"pattern": "random"})) == base
    assert checksum(cluster(policy="trace", trace={"pattern": "markov"})) != base


def test_service_type_and_replicas_follow_the_spec():
    built = cluster(replicas=2, serviceType="LoadBalancer")
    assert build_scheduler_deployment(built)["spec"]["replicas"] == 2
    service = build_scheduler_service(built)
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "grpc", "port": names.SCHEDULER_PORT,
                                         "targetPort": "grpc", "protocol": "TCP",
                                         "appProtocol": "grpc"}]


def test_manifests_validate_strictly():
    built = cluster(tenantsSecret={"name": "tokens"}, nodeSelector={"pool": "cpu"},
                    resources={"requests": {"cpu": "500m", "memory": "1Gi"}})
    for manifest in (build_scheduler_deployment(built), build_scheduler_service(built),
                     build_scheduler_configmap(built)):
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
