"""The NetworkPolicies, built as pure functions, read the way a network plugin reads them."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fastswitch_operator import names
from fastswitch_operator.build_network_policies import (
    build_frontend_network_policy,
    build_network_policies,
)
from fastswitch_operator.spec import Images, parse_spec

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
PORTS = {names.WORKER: names.WORKER_PORT, names.KVSTORE: names.KVSTORE_PORT,
         names.REDIS: names.REDIS_PORT, names.SCHEDULER: names.SCHEDULER_PORT,
         names.FRONTEND: names.FRONTEND_PORT}
# Who may call whom, on the callee's port, inside one cluster: the scheduler only from the
# frontends, the workers from the scheduler (control) and the frontends (tokens).
CALLERS = {names.SCHEDULER: {names.FRONTEND}, names.WORKER: {names.SCHEDULER, names.FRONTEND},
           names.KVSTORE: {names.SCHEDULER, names.WORKER}, names.REDIS: {names.KVSTORE}}
PEERS = [{"namespaceSelector": {"matchLabels": {"team": "ml"}}},
         {"podSelector": {"matchLabels": {"app": "gateway"}}},
         {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def policies(**spec):
    return {p["metadata"]["labels"]["app.kubernetes.io/component"]: p
            for p in build_network_policies(cluster(**spec))}


def pod_labels(cluster_name, component):
    return names.labels(cluster_name, component)


def matches(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admits(policy, labels, port):
    """Whether `policy` lets a pod with `labels` in its own namespace reach `port`."""
    for rule in policy["spec"]["ingress"]:
        if "ports" in rule and port not in {p["port"] for p in rule["ports"]}:
            continue
        if "from" not in rule:
            return True
        for peer in rule["from"]:
            if "podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer:
                if matches(peer["podSelector"], labels):
                    return True
    return False


def test_each_policy_guards_its_own_components_pods():
    for component, policy in policies().items():
        assert policy["metadata"]["name"] == names.network_policy_name("demo", component)
        assert policy["spec"]["podSelector"]["matchLabels"] == names.selector_labels("demo", component)
        assert policy["spec"]["policyTypes"] == ["Ingress"]


@pytest.mark.parametrize("callee", CALLERS)
def test_internal_ports_admit_only_the_clusters_own_callers(callee):
    policy = policies()[callee]
    for caller in names.COMPONENTS:
        expected = caller in CALLERS[callee]
        assert admits(policy, pod_labels("demo", caller), PORTS[callee]) is expected, caller
        # The same component of another cluster in the namespace is a stranger.
        assert not admits(policy, pod_labels("other", caller), PORTS[callee])
    assert not admits(policy, {"app": "something-else"}, PORTS[callee])


def test_clients_reach_the_frontends_and_no_one_else():
    everyone = policies()
    assert admits(everyone[names.FRONTEND], {"app": "a-client"}, names.FRONTEND_PORT)
    assert admits(everyone[names.FRONTEND], {"app": "a-client"}, names.FRONTEND_HTTP_PORT)
    assert not admits(everyone[names.FRONTEND], {"app": "a-client"}, 8080)
    for component in CALLERS:
        assert not admits(everyone[component], {"app": "a-client"}, PORTS[component]), component


@pytest.mark.parametrize("key", ["frontendIngress", "schedulerIngress"])
def test_frontend_ingress_is_what_the_spec_lists(key):
    # schedulerIngress is its old name, from when clients called the scheduler.
    policy = build_frontend_network_policy(cluster(networkPolicy={key: PEERS}))
    rule, _ = policy["spec"]["ingress"]  # the clients' port, then the metrics port
    assert rule["from"] == PEERS
    # gRPC and the OpenAI-compatible HTTP API admit the same peers.
    assert rule["ports"] == [{"protocol": "TCP", "port": names.FRONTEND_PORT},
                             {"protocol": "TCP", "port": names.FRONTEND_HTTP_PORT}]
    for port in (names.FRONTEND_PORT, names.FRONTEND_HTTP_PORT):
        assert admits(policy, {"app": "gateway"}, port)
        assert not admits(policy, {"app": "a-client"}, port)


def test_only_the_frontends_open_the_http_port():
    for component, policy in policies().items():
        opened = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
        assert (names.FRONTEND_HTTP_PORT in opened) is (component == names.FRONTEND), component


def test_narrowing_the_frontends_leaves_the_scheduler_to_them():
    scheduler = policies(networkPolicy={"frontendIngress": PEERS})[names.SCHEDULER]
    assert not admits(scheduler, {"app": "gateway"}, names.SCHEDULER_PORT)
    assert admits(scheduler, pod_labels("demo", names.FRONTEND), names.SCHEDULER_PORT)


def test_an_external_redis_has_no_policy_and_disabling_removes_them_all():
    assert names.REDIS not in policies(kvstore={"redis": {"url": "redis://:pw@cache:6379/0"}})
    assert policies(networkPolicy={"enabled": False}) == {}


def test_policies_validate_strictly():
    peers = [{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["gateways"]}]},
        "podSelector": {"matchLabels": {"app": "gateway"}}}]
    for policy in build_network_policies(cluster(networkPolicy={"frontendIngress": peers})):
        kubernetes_validate.validate(policy, "1.30.0", strict=True)
