"""Parsing and validating a FastSwitchCluster's spec."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastswitch_operator.spec import Images, InvalidSpecError, parse_spec
from fastswitch_operator.spec_frontend import AutoscalingSpec

CRD_PATH = (Path(__file__).resolve().parents[2] / "charts" / "fastswitch" / "crds"
            / "fastswitchclusters.fastswitch.io.yaml")
IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
MINIMAL = {"model": {"preset": "tiny"}}


def parse(spec: dict[str, Any], name: str = "demo"):
    return parse_spec(name, "team-a", spec, IMAGES)


def crd_spec_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_PATH.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def with_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server stores: the schema's defaults applied, recursively."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    result = dict(value)
    for key, sub in schema["properties"].items():
        if key not in result and "default" in sub:
            result[key] = copy.deepcopy(sub["default"])
        if key in result:
            result[key] = with_defaults(sub, result[key])
    return result


def test_operator_defaults_are_the_crd_defaults():
    defaulted = with_defaults(crd_spec_schema(), MINIMAL)
    assert defaulted != MINIMAL  # the CRD does default things
    assert parse(defaulted) == parse(MINIMAL)


def test_security_fields_default_like_the_crd():
    spec = {**MINIMAL, "tls": {"secretName": "certs"}, "networkPolicy": {}}
    assert parse(with_defaults(crd_spec_schema(), spec)) == parse(spec)


def test_frontend_autoscaling_defaults_like_the_crd():
    spec = {**MINIMAL, "frontend": {"autoscaling": {"maxReplicas": 3}}}
    assert parse(with_defaults(crd_spec_schema(), spec)) == parse(spec)


def test_pvc_path_defaults_like_the_crd():
    spec = {"model": {"pvc": {"claimName": "models"}}}
    assert parse(with_defaults(crd_spec_schema(), spec)) == parse(spec)


def test_minimal_spec_gets_documented_defaults():
    cluster = parse(MINIMAL)
    assert cluster.workers.replicas == 1
    assert cluster.workers.gpus == 1
    assert cluster.workers.block_size == 16
    assert cluster.workers.mode == "fastswitch"
    assert cluster.model.dummy_weights is False
    assert cluster.log_level == "info"
    assert cluster.workers.host_swap_bytes == 8 * 2**30
    assert cluster.scheduler.policy == "vtc"
    assert cluster.scheduler.tick_ms == 20
    assert cluster.kvstore.is_redis_managed
    assert cluster.images == IMAGES
    assert cluster.scheduler.max_queued_requests == 10_000
    assert cluster.scheduler.max_queued_per_tenant == 2_000
    assert cluster.scheduler.unroutable_timeout_seconds == 30.0
    assert cluster.tls is None
    assert cluster.network_policy.enabled is True
    assert cluster.network_policy.frontend_ingress is None  # from anywhere
    assert cluster.frontend.replicas == 2
    assert cluster.frontend.autoscaling is None
    assert cluster.frontend.service_type == "ClusterIP"
    assert cluster.frontend.placement.resources == {"requests": {"cpu": "500m", "memory": "512Mi"}}


def test_full_spec_is_parsed():
    cluster = parse({
        "logLevel": "debug",
        "model": {"pvc": {"claimName": "models", "path": "llama/8b"}, "dtype": "bfloat16",
                  "dummyWeights": True},
        "workers": {"replicas": 3, "gpus": 2, "hostSwapBytes": 1024, "kvMemoryFraction": 0.5,
                    "mode": "baseline",
                    "resources": {"limits": {"memory": "64Gi"}},
                    "nodeSelector": {"gpu": "h100"},
                    "tolerations": [{"key": "gpu", "operator": "Exists"}]},
        "scheduler": {"policy": "trace", "trace": {"pattern": "markov", "updateProbability": 0.5},
                      "tenantsSecret": {"name": "tenants"}},
        "kvstore": {"redis": {"urlSecret": {"name": "redis", "key": "url"}}},
        "frontend": {"replicas": 4, "serviceType": "LoadBalancer",
                     "autoscaling": {"minReplicas": 3, "maxReplicas": 12,
                                     "targetCPUUtilizationPercentage": 65},
                     "resources": {"requests": {"cpu": "1"}},
                     "nodeSelector": {"pool": "cpu"}},
        "images": {"worker": "registry.example/worker:2", "frontend": "registry.example/fe:2",
                   "pullSecrets": ["pull"]},
        "tls": {"secretName": "fastswitch-tls", "mutual": True},
        "networkPolicy": {"schedulerIngress": [
            {"namespaceSelector": {"matchLabels": {"team": "ml"}},
             "podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
    })
    assert cluster.log_level == "debug"
    assert cluster.model.pvc_claim_name == "models" and cluster.model.pvc_path == "llama/8b"
    assert cluster.model.dummy_weights is True
    assert cluster.workers.host_swap_bytes == 1024
    assert cluster.workers.mode == "baseline"
    assert cluster.workers.placement.node_selector == {"gpu": "h100"}
    assert cluster.scheduler.policy_params == {"pattern": "markov", "updateProbability": 0.5}
    assert cluster.scheduler.tenants_secret.key == "tenants.json"
    assert not cluster.kvstore.is_redis_managed
    assert cluster.images.worker == "registry.example/worker:2"
    assert cluster.images.scheduler == "s:1"
    assert cluster.images.frontend == "registry.example/fe:2"
    assert cluster.frontend.replicas == 4 and cluster.frontend.service_type == "LoadBalancer"
    assert cluster.frontend.autoscaling == AutoscalingSpec(3, 12, 65)
    assert cluster.frontend.placement.resources == {"requests": {"cpu": "1"}}
    assert cluster.frontend.placement.node_selector == {"pool": "cpu"}
    assert cluster.images.pull_secrets == ("pull",)
    assert cluster.tls.secret_name == "fastswitch-tls" and cluster.tls.mutual is True
    assert cluster.network_policy.frontend_ingress[1] == {
        "ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}


def test_scheduler_queue_caps_are_parsed():
    scheduler = parse({**MINIMAL, "scheduler": {"maxQueuedRequests": 64, "maxQueuedPerTenant": 8,
                                                "unroutableTimeoutSeconds": 0.5}}).scheduler
    assert (scheduler.max_queued_requests, scheduler.max_queued_per_tenant,
            scheduler.unroutable_timeout_seconds) == (64, 8, 0.5)


@pytest.mark.parametrize(("spec", "problem"), [
    ({}, "spec.model is required"),
    ({"model": {}}, "set exactly one of spec.model.preset or spec.model.pvc"),
    ({"model": {"preset": "tiny", "pvc": {"claimName": "m"}}},
     "set exactly one of spec.model.preset or spec.model.pvc"),
    ({"model": {"pvc": {"claimName": "m", "path": "../etc"}}}, "relative path inside the claim"),
    ({"model": {"preset": "tiny", "dtype": "int4"}}, "spec.model.dtype must be one of"),
    ({**MINIMAL, "workers": {"replicas": -1}}, "spec.workers.replicas must be at least 0"),
    ({**MINIMAL, "workers": {"replicas": "3"}}, "spec.workers.replicas must be of type integer"),
    ({**MINIMAL, "workers": {"replicas": True}}, "spec.workers.replicas must be of type integer"),
    ({**MINIMAL, "workers": {"kvMemoryFraction": 0}}, "kvMemoryFraction must be greater than 0"),
    ({**MINIMAL, "workers": {"kvMemoryFraction": 1.5}}, "kvMemoryFraction must be at most 1"),
    ({**MINIMAL, "workers": {"hostSwapBytes": "lots"}}, "hostSwapBytes is not a byte quantity"),
    ({**MINIMAL, "workers": {"hostSwapBytes": "16Gi",
                             "resources": {"limits": {"memory": "8Gi"}}}},
     "limits.memory must hold spec.workers.hostSwapBytes"),
    ({**MINIMAL, "workers": {"resources": {"limits": {"cpu": "two"}}}}, "is not a quantity"),
    ({**MINIMAL, "workers": {"resources": {"maximums": {}}}}, "resources.maximums is not a known"),
    ({**MINIMAL, "workers": {"replica": 2}}, "spec.workers.replica is not a known field"),
    ({**MINIMAL, "scheduler": {"policy": "lottery"}}, "spec.scheduler.policy must be one of"),
    ({**MINIMAL, "scheduler": {"trace": {"pattern": "random"}}},
     "spec.scheduler.trace is only used by policy trace"),
    ({**MINIMAL, "scheduler": {"policy": "trace", "trace": {"pattern": "sine"}}},
     "trace.pattern must be one of random, markov"),
    ({**MINIMAL, "scheduler": {"policy": "trace", "trace": {"updateProbability": 2}}},
     "trace.updateProbability must be at most 1"),
    ({**MINIMAL, "scheduler": {"vtc": {"preemptThreshold": -1}}},
     "vtc.preemptThreshold must be at least 0"),
    ({**MINIMAL, "workers": {"mode": "turbo"}}, "spec.workers.mode must be one of"),
    ({"model": {"preset": "tiny", "dummyWeights": "yes"}}, "dummyWeights must be of type boolean"),
    ({**MINIMAL, "logLevel": "loud"}, "spec.logLevel must be one of"),
    ({**MINIMAL, "scheduler": {"tenantsSecret": {"key": "t"}}},
     "spec.scheduler.tenantsSecret.name must be the name of a Secret"),
    ({**MINIMAL, "kvstore": {"redis": {"url": "http://redis"}}}, "must start with redis://"),
    ({**MINIMAL, "kvstore": {"redis": {"url": "redis://r", "urlSecret": {"name": "s", "key": "k"}}}},
     "set at most one of spec.kvstore.redis.url or spec.kvstore.redis.urlSecret"),
    ({**MINIMAL, "images": {"pullPolicy": "Sometimes"}}, "spec.images.pullPolicy must be one of"),
    ({**MINIMAL, "extra": 1}, "spec.extra is not a known field"),
    ({**MINIMAL, "scheduler": {"maxQueuedRequests": 0}}, "maxQueuedRequests must be at least 1"),
    ({**MINIMAL, "scheduler": {"maxQueuedPerTenant": 2.5}},
     "maxQueuedPerTenant must be of type integer"),
    ({**MINIMAL, "scheduler": {"unroutableTimeoutSeconds": 0}},
     "unroutableTimeoutSeconds must be greater than 0"),
    ({**MINIMAL, "scheduler": {"unroutableTimeoutSeconds": 7200}},
     "unroutableTimeoutSeconds must be at most 3600"),
    ({**MINIMAL, "tls": {"mutual": True}}, "spec.tls.secretName must be the name of a Secret"),
    ({**MINIMAL, "tls": {"secretName": "Certs!"}}, "spec.tls.secretName must be the name of"),
    ({**MINIMAL, "tls": {"secretName": "c", "mutual": "yes"}}, "tls.mutual must be of type boolean"),
    ({**MINIMAL, "tls": {"secretName": "c", "ca": "x"}}, "spec.tls.ca is not a known field"),
    ({**MINIMAL, "networkPolicy": {"enabled": "no"}}, "enabled must be of type boolean"),
    # `from: []` would let every source in: an empty list is refused, not passed on.
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": []}}, "at least one peer"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [{}]}},
     "schedulerIngress[0] must set ipBlock, namespaceSelector or podSelector"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}},
     "schedulerIngress[0].ipBlock.cidr must be a CIDR"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}},
     "ipBlock cannot be combined with selectors"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]}},
     "matchExpressions[0].values must not be empty for operator In"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [
        {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]}},
     "operator must be one of"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [{"podSelector": {"app": "x"}}]}},
     "podSelector.app is not a known field"),
    ({**MINIMAL, "networkPolicy": {"schedulerIngress": [{"nodeSelector": {}}]}},
     "schedulerIngress[0].nodeSelector is not a known field"),
    ({**MINIMAL, "networkPolicy": {"frontendIngress": []}},
     "spec.networkPolicy.frontendIngress must list at least one peer"),
    ({**MINIMAL, "networkPolicy": {"frontendIngress": [{"ipBlock": {"cidr": "x"}}]}},
     "frontendIngress[0].ipBlock.cidr must be a CIDR"),
    ({**MINIMAL, "networkPolicy": {
        "frontendIngress": [{"podSelector": {}}], "schedulerIngress": [{"podSelector": {}}]}},
     "set at most one of spec.networkPolicy.frontendIngress or "
     "spec.networkPolicy.schedulerIngress"),
    ({**MINIMAL, "frontend": {"replicas": 0}}, "spec.frontend.replicas must be at least 1"),
    ({**MINIMAL, "frontend": {"replica": 2}}, "spec.frontend.replica is not a known field"),
    ({**MINIMAL, "frontend": {"serviceType": "Ingress"}}, "spec.frontend.serviceType must be one of"),
    ({**MINIMAL, "scheduler": {"serviceType": "Ingress"}}, "spec.scheduler.serviceType must be one of"),
    ({**MINIMAL, "frontend": {"autoscaling": {}}},
     "spec.frontend.autoscaling.maxReplicas is required"),
    ({**MINIMAL, "frontend": {"autoscaling": {"minReplicas": 4, "maxReplicas": 2}}},
     "spec.frontend.autoscaling.maxReplicas must be at least minReplicas (4)"),
    ({**MINIMAL, "frontend": {"autoscaling": {"maxReplicas": 2, "targetCPU": 50}}},
     "spec.frontend.autoscaling.targetCPU is not a known field"),
    ({**MINIMAL, "frontend": {"autoscaling": {"maxReplicas": 2,
                                              "targetCPUUtilizationPercentage": 0}}},
     "targetCPUUtilizationPercentage must be at least 1"),
    ({**MINIMAL, "frontend": {"autoscaling": {"maxReplicas": 2},
                              "resources": {"limits": {"cpu": "1"}}}},
     "spec.frontend.autoscaling needs spec.frontend.resources.requests.cpu"),
])
def test_invalid_spec_names_the_problem(spec, problem):
    with pytest.raises(InvalidSpecError) as raised:
        parse(spec)
    assert problem in str(raised.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(InvalidSpecError) as raised:
        parse({"model": {}, "workers": {"replicas": -1}, "scheduler": {"policy": "lottery"}})
    assert len(raised.value.problems) == 3


def test_long_names_are_refused_because_children_add_suffixes():
    parse(MINIMAL, name="a" * 40)
    with pytest.raises(InvalidSpecError, match="at most 40 characters"):
        parse(MINIMAL, name="a" * 41)


def test_a_second_scheduler_is_refused_because_it_would_take_the_workers_over():
    with pytest.raises(InvalidSpecError, match="scheduler.replicas"):
        parse({"model": {"preset": "tiny"}, "scheduler": {"replicas": 2}})
