"""The worker StatefulSet and headless Service, built as pure functions."""

from __future__ import annotations

import kubernetes_validate

from fastswitch_operator import names
from fastswitch_operator.build_workers import (
    WORKER_STARTUP_SECONDS,
    build_workers_service,
    build_workers_statefulset,
)
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("fastswitch/worker:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def worker_container(statefulset):
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return container


def test_worker_flags_come_from_the_spec():
    sts = build_workers_statefulset(cluster(
        model={"preset": "tiny", "dtype": "float32"},
        workers={"blockSize": 8, "kvMemoryFraction": 0.75, "hostSwapBytes": "1Gi",
                 "mode": "baseline", "drainTimeoutSeconds": 60},
    ))
    assert worker_container(sts)["command"] == ["fastswitch"]
    assert worker_container(sts)["args"] == [
        "worker",
        "--metrics-port=9402",
        "--worker-id=$(FASTSWITCH_POD_NAME)",
        "--advertise-address=$(FASTSWITCH_POD_NAME).demo-workers.team-a.svc:50061",
        "--mode=baseline",
        "--block-size=8",
        "--gpu-memory-fraction=0.75",
        f"--host-kv-bytes={2**30}",
        "--drain-timeout-s=60",
        "--dtype=float32",
    ]
    env = {e["name"]: e for e in worker_container(sts)["env"]}
    assert env["FASTSWITCH_POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["FASTSWITCH_CLUSTER_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "demo-cluster-token", "key": "token"}}
    assert worker_container(sts)["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]


def test_dummy_weights_skip_loading_the_checkpoint():
    sts = build_workers_statefulset(cluster(model={"pvc": {"claimName": "m"}, "dummyWeights": True}))
    assert worker_container(sts)["args"][-1] == "--load-format=dummy"
    assert "--load-format=dummy" not in worker_container(build_workers_statefulset(cluster()))["args"]


def test_model_on_a_claim_is_mounted_read_only():
    sts = build_workers_statefulset(cluster(model={"pvc": {"claimName": "models", "path": "llama/8b"}}))
    pod = sts["spec"]["template"]["spec"]
    assert {"name": "model", "mountPath": "/models", "readOnly": True} in worker_container(sts)["volumeMounts"]
    claim = next(v for v in pod["volumes"] if v["name"] == "model")["persistentVolumeClaim"]
    assert claim == {"claimName": "models", "readOnly": True}


def test_a_preset_mounts_no_model_volume():
    pod = build_workers_statefulset(cluster())["spec"]["template"]["spec"]
    assert "model" not in {v["name"] for v in pod["volumes"]}


def test_gpus_are_requested_with_the_configured_resource_name():
    sts = build_workers_statefulset(cluster(workers={
        "gpus": 2, "gpuResourceName": "amd.com/gpu",
        "resources": {"limits": {"memory": "64Gi"}, "requests": {"cpu": "8"}},
    }))
    resources = worker_container(sts)["resources"]
    assert resources == {
        "limits": {"memory": "64Gi", "amd.com/gpu": 2},
        "requests": {"cpu": "8", "amd.com/gpu": 2},
    }


def test_cpu_workers_request_no_gpu():
    sts = build_workers_statefulset(cluster(workers={"gpus": 0}))
    assert worker_container(sts)["resources"] == {}


def test_scale_down_drains_within_the_grace_period():
    sts = build_workers_statefulset(cluster(workers={"replicas": 3, "drainTimeoutSeconds": 300}))
    assert sts["spec"]["replicas"] == 3
    assert "--drain-timeout-s=300" in worker_container(sts)["args"]
    # The pod outlives the drain: what did not finish is handed back before SIGKILL.
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 300
    # Drained workers leave the Service as soon as their health is NOT_SERVING.
    assert worker_container(sts)["readinessProbe"] == {
        "grpc": {"port": names.WORKER_PORT}, "periodSeconds": 5, "failureThreshold": 2
    }


def test_a_worker_whose_engine_stalls_is_restarted_but_not_while_it_loads():
    worker = worker_container(build_workers_statefulset(cluster()))
    liveness = {"port": names.WORKER_PORT, "service": "fastswitch.liveness"}
    assert worker["livenessProbe"]["grpc"] == liveness
    # A minute without progress, not one missed probe.
    probe = worker["livenessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 60
    assert probe["timeoutSeconds"] >= 5  # a busy worker answers late, not never
    # Liveness only counts once the startup probe (the same question) has passed, which
    # allows the whole model load.
    startup = worker["startupProbe"]
    assert startup["grpc"] == liveness
    assert startup["periodSeconds"] * startup["failureThreshold"] >= WORKER_STARTUP_SECONDS


def test_statefulset_is_addressable_through_the_headless_service():
    built = cluster()
    sts, service = build_workers_statefulset(built), build_workers_service(built)
    assert sts["spec"]["serviceName"] == service["metadata"]["name"] == "demo-workers"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["port"] == names.WORKER_PORT


def test_selector_labels_are_minimal_and_pods_carry_them():
    sts = build_workers_statefulset(cluster())
    selector = sts["spec"]["selector"]["matchLabels"]
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                             "app.kubernetes.io/component"}
    assert selector.items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    assert sts["metadata"]["labels"]["app.kubernetes.io/managed-by"] == names.MANAGED_BY


def test_pods_run_unprivileged_where_the_user_asked():
    sts = build_workers_statefulset(cluster(workers={
        "nodeSelector": {"gpu": "h100"}, "tolerations": [{"key": "gpu", "operator": "Exists"}],
    }))
    pod = sts["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert worker_container(sts)["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "gpu", "operator": "Exists"}]


def test_manifests_validate_strictly():
    built = cluster(model={"pvc": {"claimName": "models"}},
                    images={"pullSecrets": ["registry"]},
                    workers={"tolerations": [{"key": "gpu", "operator": "Exists"}]})
    for manifest in (build_workers_statefulset(built), build_workers_service(built)):
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
