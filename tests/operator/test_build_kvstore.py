"""The kvstore and the optional Redis, built as pure functions."""

from __future__ import annotations

import kubernetes_validate

from fastswitch_operator import names
from fastswitch_operator.build_kvstore import (
    build_kvstore_deployment,
    build_kvstore_service,
    build_redis_deployment,
    build_redis_service,
)
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "s:1", "fastswitch/kvstore:1", "redis:7", "IfNotPresent", ())


def cluster(**kvstore):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, "kvstore": kvstore}, IMAGES)


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def test_kvstore_uses_the_managed_redis_by_default():
    kvstore = container(build_kvstore_deployment(cluster()))
    assert kvstore["args"] == ["kvstore", "--log-level=info"]
    assert kvstore["env"] == [{"name": "REDIS_URL", "value": "redis://demo-redis.team-a.svc:6379/0"}]
    assert build_redis_service(cluster())["metadata"]["name"] == names.redis_name("demo")


def test_external_redis_url_is_passed_through():
    kvstore = container(build_kvstore_deployment(cluster(redis={"url": "rediss://cache:6380/2"})))
    assert kvstore["env"] == [{"name": "REDIS_URL", "value": "rediss://cache:6380/2"}]


def test_redis_url_from_a_secret_never_appears_in_the_pod_spec():
    deployment = build_kvstore_deployment(cluster(redis={"urlSecret": {"name": "redis", "key": "url"}}))
    (env,) = container(deployment)["env"]
    assert env == {"name": "REDIS_URL",
                   "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}}


def test_managed_redis_is_ephemeral_and_unprivileged():
    deployment = build_redis_deployment(cluster(redis={"resources": {"limits": {"memory": "1Gi"}}}))
    redis = container(deployment)
    assert redis["args"][:3] == ["redis-server", "--save", ""]
    assert redis["resources"] == {"limits": {"memory": "1Gi"}}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"name": "data", "emptyDir": {}} in pod["volumes"]


def test_manifests_validate_strictly():
    built = cluster(resources={"limits": {"memory": "512Mi"}})
    for manifest in (build_kvstore_deployment(built), build_kvstore_service(built),
                     build_redis_deployment(built), build_redis_service(built)):
        kubernetes_validate.validate(manifest, "1.30.0", strict=True)
