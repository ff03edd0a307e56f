"""The monitoring part of a FastSwitchCluster's spec: how Prometheus finds and reaches the
services' /metrics ports.

Every FastSwitch container serves Prometheus text on a named `metrics` port (always: it costs
nothing unscraped). `scrapeAnnotations` adds the `prometheus.io/scrape|port|path` pod
annotations that annotation-driven scrape configs look for; the Helm chart's PodMonitor is the
Prometheus Operator's way and needs none. `scraperIngress` lists the NetworkPolicy peers that
may reach the metrics ports (the Prometheus pods); unset, the metrics ports admit every
source, as the frontends' API port does without frontendIngress.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastswitch_operator.spec_fields import FieldReader
from fastswitch_operator.spec_security import read_peers


@dataclass(frozen=True)
class MonitoringSpec:
    scrape_annotations: bool
    # NetworkPolicyPeer objects allowed to reach the metrics ports; None allows every source.
    scraper_ingress: tuple[dict[str, Any], ...] | None


def parse_monitoring(spec: FieldReader) -> MonitoringSpec:
    monitoring = spec.sub("monitoring", ("scrapeAnnotations", "scraperIngress"))
    return MonitoringSpec(
        scrape_annotations=monitoring.get("scrapeAnnotations", "boolean", False),
        scraper_ingress=read_peers(monitoring, "scraperIngress"),
    )
