"""The set of children a cluster gets."""

from __future__ import annotations

from fastswitch_operator import names
from fastswitch_operator.build_secrets import SECRET_VERSIONS_ANNOTATION
from fastswitch_operator.children import CHILD_KINDS, build_children, workload_names
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def kinds_and_names(spec):
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)
    return [(c["kind"], c["metadata"]["name"]) for c in build_children(cluster)]


REDIS_CHILDREN = {("Deployment", "demo-redis"), ("Service", "demo-redis"),
                  ("NetworkPolicy", "demo-redis")}


def test_managed_redis_adds_its_deployment_service_and_network_policy():
    children = kinds_and_names({})
    assert REDIS_CHILDREN <= set(children)
    external = kinds_and_names({"kvstore": {"redis": {"url": "redis://cache:6379/0"}}})
    assert not REDIS_CHILDREN & set(external)
    assert len(external) == len(children) - len(REDIS_CHILDREN)


def test_network_policies_guard_every_component_unless_disabled():
    policies = {name for kind, name in kinds_and_names({}) if kind == "NetworkPolicy"}
    assert policies == {"demo-workers", "demo-kvstore", "demo-scheduler", "demo-frontend",
                        "demo-redis"}
    disabled = kinds_and_names({"networkPolicy": {"enabled": False}})
    assert "NetworkPolicy" not in {kind for kind, _ in disabled}


def test_every_child_has_its_own_name_and_a_known_kind():
    children = kinds_and_names({"frontend": {"autoscaling": {"maxReplicas": 4}}})
    assert len(set(children)) == len(children)
    assert {kind for kind, _ in children} == {kind for _, kind in CHILD_KINDS}


def test_the_frontends_get_a_deployment_a_service_and_an_autoscaler_only_when_asked():
    frontend = {("Deployment", "demo-frontend"), ("Service", "demo-frontend"),
                ("NetworkPolicy", "demo-frontend")}
    autoscaler = ("HorizontalPodAutoscaler", "demo-frontend")
    assert frontend <= set(kinds_and_names({}))
    assert autoscaler not in kinds_and_names({})
    kinds = kinds_and_names({"frontend": {"autoscaling": {"maxReplicas": 4}}})
    # After the Deployment it scales.
    assert kinds.index(autoscaler) > kinds.index(("Deployment", "demo-frontend"))


def test_configuration_and_services_come_before_workloads():
    kinds = [kind for kind, _ in kinds_and_names({})]
    first_workload = min(i for i, k in enumerate(kinds) if k in ("Deployment", "StatefulSet"))
    assert not {"ConfigMap", "NetworkPolicy", "Service"} & set(kinds[first_workload:])
    assert kinds.index("ConfigMap") == 0


def test_pod_templates_carry_the_versions_of_the_generated_secrets_they_read():
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"}}, IMAGES)
    versions = {"demo-cluster-token": "11", "demo-redis": "12"}
    stamped = {(c["kind"], c["metadata"]["name"]): c for c in build_children(cluster, versions)}

    def versions_of(kind, name):
        template = stamped[kind, name]["spec"]["template"]["metadata"]
        return template.get("annotations", {}).get(SECRET_VERSIONS_ANNOTATION)

    assert versions_of("StatefulSet", "demo-workers") == "demo-cluster-token=11"
    assert versions_of("Deployment", "demo-scheduler") == "demo-cluster-token=11"
    assert versions_of("Deployment", "demo-frontend") == "demo-cluster-token=11"
    assert versions_of("Deployment", "demo-kvstore") == "demo-cluster-token=11,demo-redis=12"
    # Redis restarts for its password, not for the cluster credential it never reads.
    assert versions_of("Deployment", "demo-redis") == "demo-redis=12"
    # A new Secret (another version) rolls exactly the pods that read it.
    rotated = build_children(cluster, {**versions, "demo-redis": "40"})
    changed = {(c["kind"], c["metadata"]["name"]) for c in rotated
               if c != stamped[c["kind"], c["metadata"]["name"]]}
    assert changed == {("Deployment", "demo-kvstore"), ("Deployment", "demo-redis")}


def test_workloads_match_the_children_built():
    children = set(kinds_and_names({}))
    for component, workload in workload_names("demo").items():
        assert component in names.COMPONENTS
        assert workload in children
