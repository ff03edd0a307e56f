"""The chart's monitoring parts, rendered by Helm's own engine: the Grafana dashboard's
ConfigMap, the PodMonitor (only where the Prometheus Operator's API exists) and the KEDA
ScaledObject that scales a FastSwitchCluster's workers.

KEDA's CRD is not installed here and its real schema could not be fetched offline: the
ScaledObject is checked against tests/data/keda-scaledobject-v1alpha1.schema.json, written by
hand from KEDA's documented fields (see its $comment)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_python import _native
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fastswitch.tenants import TenantRegistry
from fastswitch_operator import names
from fastswitch_operator.children import build_children
from fastswitch_operator.spec import Images, parse_spec
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.metrics import SchedulerMetrics

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "fastswitch"
RELEASE, NAMESPACE = "fs", "fastswitch-system"  # as conftest's render fixture
KEDA_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "keda-scaledobject-v1alpha1.schema.json"
DASHBOARD = CHART_DIR / "dashboards" / "fastswitch.json"
MONITORING_API = ["monitoring.coreos.com/v1", "monitoring.coreos.com/v1/PodMonitor"]
KEDA = {"autoscaling": {"keda": {"enabled": True,
                                 "prometheusServerAddress": "http://prometheus.monitoring:9090"}}}
IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def render_with(chart: helm.Chart, values: dict, api_versions: list[str] = ()) -> dict[str, list]:
    """Render with extra API versions in .Capabilities, as `helm template --api-versions`
    does (helm-python passes the option through; its render() does not expose it)."""
    options = {"name": RELEASE, "namespace": NAMESPACE, "api_versions": list(api_versions)}
    rendered = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values),
                                              json.dumps(options)))
    manifests = {}
    for path, text in rendered.items():
        docs = [doc for doc in yaml.safe_load_all(text) if doc] if path.endswith(".yaml") else []
        if docs:
            manifests[path.rsplit("/", 1)[-1]] = docs
    return manifests


# ---- the dashboard --------------------------------------------------------------------------
def test_the_dashboard_is_valid_json_with_a_panel_per_question():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    titles = {p["title"] for p in panels}
    assert {"Swap bandwidth", "Copy calls", "Engine stall", "Swap latency p99",
            "Served tokens per tenant", "VTC counters", "Jain's fairness index",
            "Preemptions by reason", "Time to first token", "Inter-token latency",
            "End-to-end latency", "GPU KV usage", "Host KV pool usage", "KV reuse"} <= titles
    for panel in panels:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    # Latency tails are quantiles of the histograms, p50 and p99.
    latency = next(p for p in panels if p["title"] == "Time to first token")
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.5", "histogram_quantile(0.99"]


def test_the_dashboard_configmap_renders_for_the_grafana_sidecar(chart):
    assert "monitoring-configmap.yaml" not in render_with(chart, {})
    values = {"monitoring": {"grafanaDashboard": {"enabled": True, "namespace": "grafana"}}}
    (configmap,) = render_with(chart, values)["monitoring-configmap.yaml"]
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["fastswitch.json"]) == json.loads(DASHBOARD.read_text())
    kubernetes_validate.validate(configmap, "1.30.0", strict=True)


def test_the_crd_takes_the_monitoring_fields(validate_cluster):
    validate_cluster({"apiVersion": "fastswitch.io/v1alpha1", "kind": "FastSwitchCluster",
                      "metadata": {"name": "demo"},
                      "spec": {"model": {"preset": "tiny"},
                               "monitoring": {"scrapeAnnotations": True, "scraperIngress": [
                                   {"namespaceSelector": {"matchLabels": {"team": "obs"}}}]}}})
    with pytest.raises(jsonschema.ValidationError):
        validate_cluster({"apiVersion": "fastswitch.io/v1alpha1", "kind": "FastSwitchCluster",
                          "metadata": {"name": "demo"},
                          "spec": {"model": {"preset": "tiny"}, "monitoring": {"scrapers": []}}})


# ---- the PodMonitor -------------------------------------------------------------------------
def test_the_pod_monitor_needs_the_prometheus_operators_api(chart):
    values = {"monitoring": {"podMonitor": {"enabled": True}}}
    assert "monitoring-podmonitor.yaml" not in render_with(chart, values)
    assert "monitoring-podmonitor.yaml" not in render_with(chart, {}, MONITORING_API)
    assert "monitoring-podmonitor.yaml" in render_with(chart, values, MONITORING_API)


def test_the_pod_monitor_scrapes_the_metrics_port_of_every_fastswitch_pod(chart):
    values = {"monitoring": {"podMonitor": {"enabled": True, "interval": "30s",
                                            "labels": {"release": "kube-prometheus"}}},
              "operator": {"watch": {"namespaces": ["team-a", "team-b"]}}}
    (monitor,) = render_with(chart, values, MONITORING_API)["monitoring-podmonitor.yaml"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    # The pods the operator builds: selected by their labels, each with a `metrics` port.
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"}}, IMAGES)
    selected = set()
    for child in build_children(cluster):
        template = child.get("spec", {}).get("template")
        if not template:
            continue
        labels = template["metadata"]["labels"]
        if _selects(spec["selector"], labels):
            selected.add(labels["app.kubernetes.io/component"])
            (container,) = template["spec"]["containers"]
            assert "metrics" in {p["name"] for p in container["ports"]}
    assert selected == set(names.METRICS_PORTS)  # every service, and not Redis


def test_cluster_wide_the_pod_monitor_looks_in_every_namespace(chart):
    values = {"monitoring": {"podMonitor": {"enabled": True}},
              "operator": {"watch": {"clusterWide": True}}}
    (monitor,) = render_with(chart, values, MONITORING_API)["monitoring-podmonitor.yaml"]
    assert monitor["spec"]["namespaceSelector"] == {"any": True}


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


# ---- KEDA -----------------------------------------------------------------------------------
def test_keda_scales_the_clusters_workers_on_waiting_requests_per_worker(chart, crd):
    values = {**KEDA, "exampleCluster": {"enabled": True, "name": "smoke",
                                         "spec": {"model": {"preset": "tiny"}}}}
    values["autoscaling"]["keda"] |= {"minReplicas": 2, "maxReplicas": 6,
                                      "waitingRequestsPerWorker": 2.5}
    (scaled,) = render_with(chart, values)["workers-scaledobject.yaml"]
    jsonschema.Draft7Validator(json.loads(KEDA_SCHEMA.read_text())).validate(scaled)
    spec = scaled["spec"]
    # The target is the FastSwitchCluster, whose scale subresource moves the worker count.
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        f"{crd['spec']['group']}/{names.VERSION}", crd["spec"]["names"]["kind"], "smoke")
    (version,) = crd["spec"]["versions"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.workers.replicas"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    (trigger,) = spec["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    metadata = trigger["metadata"]
    assert metadata["threshold"] == "2.5"
    assert metadata["serverAddress"] == "http://prometheus.monitoring:9090"
    assert metadata["query"] == (
        f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}",'
        'app_kubernetes_io_instance="smoke",app_kubernetes_io_component="scheduler"})')


def test_the_keda_query_reads_what_the_scheduler_exports_by_the_pod_monitors_labels(chart):
    (scaled,) = render_with(chart, KEDA)["workers-scaledobject.yaml"]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    # The labels: podTargetLabels as Prometheus names them.
    values = {"monitoring": {"podMonitor": {"enabled": True}}}
    (monitor,) = render_with(chart, values, MONITORING_API)["monitoring-podmonitor.yaml"]
    attached = {re.sub(r"[^A-Za-z0-9_]", "_", label) for label in monitor["spec"]["podTargetLabels"]}
    used = set(re.findall(r"(\w+)=", query)) - {"namespace"}  # namespace: every target has it
    assert used <= attached
    # The metric: one the scheduler's registry exports (a real one, collected here).
    core = SchedulerCore(SchedulerConfig(), TenantRegistry.from_file(
        "", input_weight=1.0, output_weight=2.0))
    text = generate_latest(SchedulerMetrics(core).registry).decode()
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert set(re.findall(r"(vllm:\w+)", query)) <= exported
    assert text.count("vllm:num_requests_waiting{") == 1  # one cluster-wide series


def test_a_query_of_ones_own_replaces_the_default(chart):
    values = {"autoscaling": {"keda": {**KEDA["autoscaling"]["keda"],
                                       "query": "sum(my_waiting_requests)"}}}
    (scaled,) = render_with(chart, values)["workers-scaledobject.yaml"]
    assert scaled["spec"]["triggers"][0]["metadata"]["query"] == "sum(my_waiting_requests)"


@pytest.mark.parametrize("keda, problem", [
    ({"enabled": True}, "prometheusServerAddress"),
    ({"enabled": True, "prometheusServerAddress": "prometheus:9090"}, "prometheusServerAddress"),
    ({"enabled": True, "prometheusServerAddress": "http://p:9090", "waitingRequestsPerWorker": 0},
     "waitingRequestsPerWorker"),
    ({"enabled": True, "prometheusServerAddress": "http://p:9090", "minReplicas": 5,
      "maxReplicas": 2}, "must not exceed"),
])
def test_bad_keda_values_fail_the_render(chart, keda, problem):
    with pytest.raises(Exception, match=problem):
        render_with(chart, {"autoscaling": {"keda": keda}})


def test_keda_is_off_by_default_and_lint_is_clean_with_everything_on(chart, chart_dir):
    assert "workers-scaledobject.yaml" not in render_with(chart, {})
    values = {**KEDA, "monitoring": {"podMonitor": {"enabled": True},
                                     "grafanaDashboard": {"enabled": True}}}
    report = helm.lint(chart_dir, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
