"""The FastSwitchCluster CRD the chart ships: valid, what the operator serves, and what the
documentation shows."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fastswitch_operator import names
from fastswitch_operator.spec import Images, parse_spec

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts" / "fastswitch" / "crds" / "fastswitchclusters.fastswitch.io.yaml"
DOCS = REPO / "docs" / "kubernetes.md"


def schema_at(crd, json_path):
    """The schema of a field named by a CRD JSONPath (".spec.workers.replicas")."""
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in json_path.lstrip(".").split("."):
        node = node["properties"][key]
    return node


def test_crd_validates_strictly(crd):
    kubernetes_validate.validate(crd, "1.30.0", strict=True)


def test_the_chart_ships_the_crd_the_operator_tests_use(chart):
    # tests/operator/conftest.py registers chart.crds in the emulated API server.
    (only,) = chart.crds
    assert sorted(p.name for p in CRD_FILE.parent.iterdir()) == [CRD_FILE.name]
    assert yaml.safe_load(only["data"]) == yaml.safe_load(CRD_FILE.read_text())


def test_crd_is_the_resource_the_operator_serves(crd):
    assert crd["metadata"]["name"] == f"{names.PLURAL}.{names.GROUP}"
    assert crd["spec"]["group"] == names.GROUP
    assert crd["spec"]["names"]["kind"] == names.KIND
    assert crd["spec"]["names"]["plural"] == names.PLURAL
    assert crd["spec"]["names"]["shortNames"] == ["fsc"]
    assert crd["spec"]["scope"] == "Namespaced"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == names.VERSION and version["served"] and version["storage"]


def test_scale_subresource_is_the_worker_count(crd):
    scale = crd["spec"]["versions"][0]["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.workers.replicas"
    assert schema_at(crd, scale["specReplicasPath"])["type"] == "integer"
    assert schema_at(crd, scale["statusReplicasPath"])["type"] == "integer"
    assert schema_at(crd, scale["labelSelectorPath"])["type"] == "string"
    assert "status" in crd["spec"]["versions"][0]["subresources"]


def test_printer_columns_point_at_declared_fields(crd):
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Phase", "Ready", "Desired", "Frontends", "Policy", "Endpoint", "Age"]
    for column in columns:
        if column["jsonPath"] != ".metadata.creationTimestamp":
            assert schema_at(crd, column["jsonPath"])["type"] == column["type"], column["name"]


def test_status_has_standard_conditions(crd):
    conditions = schema_at(crd, ".status.conditions")
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in item["properties"]
    assert schema_at(crd, ".status.phase")["enum"] == ["Pending", "Progressing", "Ready", "Failed"]


def _defaults(node, path="spec"):
    if isinstance(node, dict):
        if "default" in node:
            yield path, node
        for key, sub in node.get("properties", {}).items():
            yield from _defaults(sub, f"{path}.{key}")


def test_every_default_fits_its_own_schema(crd):
    # The API server refuses a CRD whose defaults its own schema would reject.
    found = list(_defaults(schema_at(crd, ".spec")))
    assert len(found) > 10
    misfits = {path: [e.message for e in jsonschema.Draft4Validator(node).iter_errors(node["default"])]
               for path, node in found}
    assert {path: errors for path, errors in misfits.items() if errors} == {}


def test_schema_rejects_what_the_operator_rejects(validate_cluster):
    base = {"apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": "demo", "namespace": "ns"}}
    validate_cluster({**base, "spec": {"model": {"preset": "tiny"}}})
    validate_cluster({**base, "spec": {
        "model": {"preset": "tiny"}, "tls": {"secretName": "demo-tls", "mutual": True},
        "scheduler": {"maxQueuedRequests": 100, "maxQueuedPerTenant": 10,
                      "unroutableTimeoutSeconds": 1.5},
        "networkPolicy": {"enabled": True, "frontendIngress": [
            {"namespaceSelector": {"matchLabels": {"team": "ml"}}, "podSelector": {}},
            {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]},
        "frontend": {"replicas": 3, "serviceType": "LoadBalancer",
                     "autoscaling": {"minReplicas": 2, "maxReplicas": 8,
                                     "targetCPUUtilizationPercentage": 70},
                     "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                     "nodeSelector": {"pool": "cpu"}},
        "images": {"frontend": "registry.example/fastswitch/frontend:1"}}})
    # The deprecated name, alone, still validates.
    validate_cluster({**base, "spec": {
        "model": {"preset": "tiny"}, "scheduler": {"serviceType": "NodePort"},
        "networkPolicy": {"schedulerIngress": [{"podSelector": {}}]}}})
    for bad in ({"model": {"preset": "Tiny!"}},
                {"model": {"preset": "tiny"}, "workers": {"replicas": -1}},
                {"model": {"preset": "tiny"}, "workers": {"kvMemoryFraction": 0}},
                {"model": {"preset": "tiny"}, "workers": {"hostSwapBytes": "lots"}},
                {"model": {"preset": "tiny"}, "scheduler": {"policy": "lottery"}},
                {"model": {"preset": "tiny"}, "kvstore": {"redis": {"url": "http://x"}}},
                {"model": {"preset": "tiny"}, "workers": {"replica": 2}},
                {"model": {"preset": "tiny"}, "scheduler": {"maxQueuedRequests": 0}},
                {"model": {"preset": "tiny"}, "scheduler": {"maxQueuedPerTenant": "many"}},
                {"model": {"preset": "tiny"}, "scheduler": {"unroutableTimeoutSeconds": 0}},
                {"model": {"preset": "tiny"}, "tls": {"mutual": True}},
                {"model": {"preset": "tiny"}, "tls": {"secretName": "Certs!"}},
                {"model": {"preset": "tiny"}, "networkPolicy": {"schedulerIngress": []}},
                {"model": {"preset": "tiny"}, "networkPolicy": {"schedulerIngress": [
                    {"nodeSelector": {}}]}},
                {"model": {"preset": "tiny"}, "networkPolicy": {"schedulerIngress": [
                    {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]}},
                {"model": {"preset": "tiny"}, "networkPolicy": {"frontendIngress": []}},
                {"model": {"preset": "tiny"}, "networkPolicy": {"frontendIngress": [
                    {"nodeSelector": {}}]}},
                {"model": {"preset": "tiny"}, "frontend": {"replicas": 0}},
                {"model": {"preset": "tiny"}, "frontend": {"serviceType": "Ingress"}},
                {"model": {"preset": "tiny"}, "frontend": {"autoscaling": {"minReplicas": 2}}},
                {"model": {"preset": "tiny"}, "frontend": {"autoscaling": {
                    "maxReplicas": 2, "targetCPUUtilizationPercentage": 0}}},
                {"model": {"preset": "tiny"}, "frontend": {"resources": {"requests": {
                    "cpu": "lots"}}}},
                {"workers": {}}):
        with pytest.raises(jsonschema.ValidationError):
            validate_cluster({**base, "spec": bad})


def documented_manifests():
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_documented_clusters_are_valid(validate_cluster):
    clusters = [doc for doc in documented_manifests() if doc["kind"] == names.KIND]
    assert len(clusters) >= 2
    for cluster in clusters:
        validate_cluster(cluster)
        parse_spec(cluster["metadata"]["name"], cluster["metadata"].get("namespace", "default"),
                   cluster["spec"], Images("w", "f", "s", "k", "r", "IfNotPresent", ()))


def is_cert_manager(doc):
    return doc["apiVersion"].startswith("cert-manager.io/")


def test_other_documented_manifests_validate_strictly():
    others = [doc for doc in documented_manifests()
              if doc["kind"] != names.KIND and not is_cert_manager(doc)]
    assert {doc["kind"] for doc in others} >= {"Secret", "HorizontalPodAutoscaler"}
    for doc in others:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_documented_certificate_names_what_the_pods_verify():
    documented = documented_manifests()
    certificates = {doc["spec"]["secretName"]: doc for doc in documented
                    if is_cert_manager(doc) and doc["kind"] == "Certificate"}
    clusters = [doc for doc in documented if doc["kind"] == names.KIND and "tls" in doc["spec"]]
    assert clusters
    for cluster in clusters:
        name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
        certificate = certificates[cluster["spec"]["tls"]["secretName"]]
        assert certificate["metadata"]["namespace"] == namespace
        dns_names = set(certificate["spec"]["dnsNames"])
        hosts = {names.component_host(name, namespace, component)
                 for component in (names.FRONTEND, names.SCHEDULER, names.WORKER, names.KVSTORE)}
        assert hosts <= dns_names
        assert f"*.{names.component_host(name, namespace, names.WORKER)}" in dns_names
        if cluster["spec"]["tls"].get("mutual"):
            assert {"server auth", "client auth"} <= set(certificate["spec"]["usages"])
        # ca.crt is written by a CA issuer: the pods verify each other with it.
        issuer = next(doc for doc in documented if is_cert_manager(doc) and doc["kind"] == "Issuer"
                      and doc["metadata"]["name"] == certificate["spec"]["issuerRef"]["name"])
        assert "ca" in issuer["spec"]
