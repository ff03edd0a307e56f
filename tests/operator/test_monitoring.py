"""Scraping: every FastSwitch pod serves /metrics on a named `metrics` port its service was
told to use, optionally announced by prometheus.io annotations, and reachable through the
NetworkPolicies only by the scrapers the spec names."""

from __future__ import annotations

import kubernetes_validate
import pytest

from fastswitch import settings
from fastswitch_cli.main import build_parser
from fastswitch_frontend.config import FrontendConfig
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_operator import names
from fastswitch_operator.build_network_policies import build_network_policies
from fastswitch_operator.children import build_children
from fastswitch_operator.spec import Images, InvalidSpecError, parse_spec
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.service.config import WorkerConfig

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
CONFIGS = {"worker": WorkerConfig, "frontend": FrontendConfig, "scheduler": SchedulerConfig,
           "kvstore": KVStoreConfig}
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]


def cluster(**spec):
    return parse_spec("demo", "team-a", {"model": {"preset": "tiny"}, **spec}, IMAGES)


def pod_templates(children):
    """{component: pod template} of the FastSwitch services (Redis left out)."""
    found = {}
    for child in children:
        template = child.get("spec", {}).get("template")
        component = child["metadata"]["labels"]["app.kubernetes.io/component"]
        if template and component in names.METRICS_PORTS:
            found[component] = template
    return found


def test_every_service_serves_metrics_on_the_named_port_its_flag_sets():
    templates = pod_templates(build_children(cluster()))
    assert set(templates) == set(names.METRICS_PORTS)
    for component, template in templates.items():
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == names.METRICS_PORTS[component]
        command = container["args"][0]
        parsed = settings.resolve(CONFIGS[command], build_parser(command).parse_args(container["args"]), {})
        assert parsed["metrics_port"] == ports["metrics"], component
        # The operator's numbers are the services' own defaults, so a hand-run service matches.
        assert CONFIGS[command]().metrics_port == ports["metrics"], component
        assert not any(k.startswith("prometheus.io/") for k in
                       template["metadata"].get("annotations", {})), component


def test_scrape_annotations_name_the_metrics_port_and_path():
    templates = pod_templates(build_children(cluster(monitoring={"scrapeAnnotations": True})))
    for component, template in templates.items():
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(names.METRICS_PORTS[component])
        assert annotations["prometheus.io/path"] == "/metrics"


def metrics_rule(policy, port):
    (rule,) = [r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": port} in r["ports"]]
    return rule


def test_network_policies_open_the_metrics_port_to_the_named_scrapers_only():
    for spec, expected_from in (({}, None), ({"monitoring": {"scraperIngress": PROMETHEUS}}, PROMETHEUS)):
        policies = build_network_policies(cluster(**spec))
        by_component = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p for p in policies}
        for component, port in names.METRICS_PORTS.items():
            rule = metrics_rule(by_component[component], port)
            assert rule.get("from") == expected_from, component
            # The metrics rule opens the metrics port and nothing else.
            assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        for policy in policies:
            kubernetes_validate.validate(policy, "1.30.0", strict=True)
        assert all(p["port"] != 9403 for r in by_component[names.REDIS]["spec"]["ingress"]
                   for p in r["ports"])


@pytest.mark.parametrize("monitoring, problem", [
    ({"scraperIngress": []}, "must list at least one peer"),
    ({"scraperIngress": [{}]}, "must set ipBlock, namespaceSelector or podSelector"),
    ({"scrapeAnnotations": "yes"}, "must be of type boolean"),
    ({"serviceMonitor": True}, "is not a known field"),
])
def test_invalid_monitoring_specs_are_refused(monitoring, problem):
    with pytest.raises(InvalidSpecError, match=problem):
        cluster(monitoring=monitoring)

