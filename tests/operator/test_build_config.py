"""The model, the tenants file and the ConfigMap the frontends, the scheduler and the workers
share."""

from __future__ import annotations

import kubernetes_validate

from fastswitch_operator import names
from fastswitch_operator.build_config import (
    CONFIG_CHECKSUM_ANNOTATION,
    build_configmap,
    model_argument,
    tenants_args,
    tenants_volume,
)
from fastswitch_operator.build_frontend import build_frontend_deployment
from fastswitch_operator.build_scheduler import build_scheduler_deployment
from fastswitch_operator.build_workers import build_workers_statefulset
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def test_model_is_a_preset_or_a_directory_in_the_claim():
    assert model_argument(cluster()) == "tiny"
    assert model_argument(cluster(model={"pvc": {"claimName": "m"}})) == "/models"
    assert model_argument(cluster(model={"pvc": {"claimName": "m", "path": "qwen/7b"}})) == "/models/qwen/7b"


def test_configmap_holds_the_shared_settings():
    configmap = build_configmap(cluster(logLevel="debug", model={"pvc": {"claimName": "m", "path": "x"}}))
    assert configmap["metadata"]["name"] == names.config_name("demo")
    assert configmap["data"] == {
        "FASTSWITCH_MODEL": "/models/x",
        "FASTSWITCH_KVSTORE_ADDR": "demo-kvstore.team-a.svc:50071",
        "FASTSWITCH_LOG_LEVEL": "debug",
        "HF_HUB_OFFLINE": "1",
    }
    kubernetes_validate.validate(configmap, "1.30.0", strict=True)


def test_a_change_to_the_shared_settings_rolls_frontends_scheduler_and_workers():
    def checksums(built):
        return [build["spec"]["template"]["metadata"]["annotations"][CONFIG_CHECKSUM_ANNOTATION]
                for build in (build_frontend_deployment(built), build_scheduler_deployment(built),
                              build_workers_statefulset(built))]

    before = checksums(cluster())
    assert len(set(before)) == 1
    assert checksums(cluster()) == before
    assert checksums(cluster(logLevel="debug")) != before
    # Settings that are flags change the pod template themselves: no checksum change needed.
    assert checksums(cluster(workers={"replicas": 5})) == before


def test_the_tenants_file_is_a_directory_mount_of_its_secret():
    assert tenants_args(cluster()) == [] and tenants_volume(cluster()) == ([], [])
    built = cluster(scheduler={"tenantsSecret": {"name": "tokens"}})
    assert tenants_args(built) == ["--tenants-file=/etc/fastswitch/tenants/tenants.json"]
    (mount,), (volume,) = tenants_volume(built)
    # No subPath: a rotated token reaches the running frontends and scheduler.
    assert mount == {"name": "tenants", "mountPath": "/etc/fastswitch/tenants", "readOnly": True}
    assert volume == {"name": "tenants", "secret": {"secretName": "tokens", "defaultMode": 0o440}}
