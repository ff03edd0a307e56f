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

IMAGES = Images("w:1", "f:1", "s:1", "fastswitch/kvstore:1", "redis:7", "IfNotPresent", ())


def cluster(**kvstore):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, "kvstore": kvstore}, IMAGES)


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env_of(container):
    return {env["name"]: env for env in container["env"]}


PASSWORD_REF = {"secretKeyRef": {"name": "demo-redis", "key": "password"}}
TOKEN_REF = {"secretKeyRef": {"name": "demo-cluster-token", "key": "token"}}


def test_kvstore_uses_the_managed_redis_with_its_password_by_default():
    kvstore = container(build_kvstore_deployment(cluster()))
    assert kvstore["args"] == ["kvstore", "--metrics-port=9403", "--log-level=info"]
    names_in_order = [env["name"] for env in kvstore["env"]]
    # The kubelet expands $(REDIS_PASSWORD) only when it is defined before REDIS_URL.
    assert names_in_order.index("REDIS_PASSWORD") < names_in_order.index("REDIS_URL")
    env = env_of(kvstore)
    assert env["REDIS_PASSWORD"] == {"name": "REDIS_PASSWORD", "valueFrom": PASSWORD_REF}
    assert env["REDIS_URL"] == {"name": "REDIS_URL",
                                "value": "redis://:$(REDIS_PASSWORD)@demo-redis.team-a.svc:6379/0"}
    assert build_redis_service(cluster())["metadata"]["name"] == names.redis_name("demo")


def test_kvstore_presents_the_cluster_credential():
    assert env_of(container(build_kvstore_deployment(cluster())))["FASTSWITCH_CLUSTER_TOKEN"] == {
        "name": "FASTSWITCH_CLUSTER_TOKEN", "valueFrom": TOKEN_REF}


def test_external_redis_url_is_passed_through_without_the_managed_password():
    kvstore = container(build_kvstore_deployment(cluster(redis={"url": "rediss://cache:6380/2"})))
    assert env_of(kvstore)["REDIS_URL"] == {"name": "REDIS_URL", "value": "rediss://cache:6380/2"}
    assert "REDIS_PASSWORD" not in env_of(kvstore)


def test_redis_url_from_a_secret_never_appears_in_the_pod_spec():
    deployment = build_kvstore_deployment(cluster(redis={"urlSecret": {"name": "redis", "key": "url"}}))
    assert env_of(container(deployment))["REDIS_URL"] == {
        "name": "REDIS_URL", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}}
    assert "REDIS_PASSWORD" not in env_of(container(deployment))


def test_managed_redis_requires_the_generated_password():
    redis = container(build_redis_deployment(cluster()))
    assert redis["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": PASSWORD_REF}]
    args = redis["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    assert args[args.index("--protected-mode") + 1] == "yes"


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
