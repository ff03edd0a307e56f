"""The set of children a cluster gets."""

from __future__ import annotations

from fastswitch_operator import names
from fastswitch_operator.children import CHILD_KINDS, build_children, workload_names
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def kinds_and_names(spec):
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)
    return [(c["kind"], c["metadata"]["name"]) for c in build_children(cluster)]


def test_managed_redis_adds_its_deployment_and_service():
    children = kinds_and_names({})
    assert ("Deployment", "demo-redis") in children and ("Service", "demo-redis") in children
    external = kinds_and_names({"kvstore": {"redis": {"url": "redis://cache:6379/0"}}})
    assert not {("Deployment", "demo-redis"), ("Service", "demo-redis")} & set(external)
    assert len(external) == len(children) - 2


def test_every_child_has_its_own_name_and_a_known_kind():
    children = kinds_and_names({})
    assert len(set(children)) == len(children)
    assert {kind for kind, _ in children} == {kind for _, kind in CHILD_KINDS}


def test_configuration_and_services_come_before_workloads():
    kinds = [kind for kind, _ in kinds_and_names({})]
    first_workload = min(i for i, k in enumerate(kinds) if k in ("Deployment", "StatefulSet"))
    assert "ConfigMap" not in kinds[first_workload:]
    assert kinds.index("ConfigMap") == 0


def test_workloads_match_the_children_built():
    children = set(kinds_and_names({}))
    for component, workload in workload_names("demo").items():
        assert component in names.COMPONENTS
        assert workload in children
