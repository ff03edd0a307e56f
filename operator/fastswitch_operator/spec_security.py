"""The security parts of a FastSwitchCluster's spec: TLS and NetworkPolicies.

NetworkPolicy peers are passed through to Kubernetes as given, so they are checked here
against the rules the API server applies to them (an empty `from` would mean everyone).
`schedulerIngress` is the old name of `frontendIngress`, from when clients called the
scheduler: it is still accepted, alone.
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass
from typing import Any

from fastswitch_operator.spec_fields import DNS_SUBDOMAIN, FieldReader

PEER_KEYS = ("ipBlock", "namespaceSelector", "podSelector")
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True)
class TLSSpec:
    """A kubernetes.io/tls Secret (tls.crt, tls.key, ca.crt, as cert-manager writes it) that
    every service serves and calls with; `mutual` makes servers require client certificates."""

    secret_name: str
    mutual: bool


@dataclass(frozen=True)
class NetworkPolicySpec:
    enabled: bool
    # NetworkPolicyPeer objects allowed to call the frontends; None allows every source.
    frontend_ingress: tuple[dict[str, Any], ...] | None


def parse_tls(spec: FieldReader) -> TLSSpec | None:
    if not spec.has("tls"):
        return None
    tls = spec.sub("tls", ("secretName", "mutual"))
    secret_name = tls.get("secretName", "string")
    if not secret_name or not DNS_SUBDOMAIN.match(secret_name) or len(secret_name) > 253:
        tls.problems.append(f"{tls.path}.secretName must be the name of a Secret")
    return TLSSpec(secret_name=secret_name or "", mutual=tls.get("mutual", "boolean", False))


def parse_network_policy(spec: FieldReader) -> NetworkPolicySpec:
    policy = spec.sub("networkPolicy", ("enabled", "frontendIngress", "schedulerIngress"))
    if policy.has("frontendIngress") and policy.has("schedulerIngress"):
        policy.problems.append(
            f"set at most one of {policy.path}.frontendIngress or {policy.path}.schedulerIngress "
            "(its old name)")
    key = "schedulerIngress" if policy.has("schedulerIngress") else "frontendIngress"
    return NetworkPolicySpec(enabled=policy.get("enabled", "boolean", True),
                             frontend_ingress=read_peers(policy, key))


def read_peers(reader: FieldReader, key: str) -> tuple[dict[str, Any], ...] | None:
    """The NetworkPolicyPeer list at `key`, each checked (problems go to the reader); None when
    it is left out (every source allowed)."""
    peers = reader.get(key, "array")
    if peers is None:
        return None
    if not peers:
        reader.problems.append(
            f"{reader.path}.{key} must list at least one peer (leave it out to allow every "
            "source)")
    for index, peer in enumerate(peers):
        _check_peer(FieldReader(peer, f"{reader.path}.{key}[{index}]", reader.problems,
                                PEER_KEYS))
    return tuple(copy.deepcopy(p) for p in peers)


def _check_peer(peer: FieldReader) -> None:
    if not any(peer.has(key) for key in PEER_KEYS):
        peer.problems.append(f"{peer.path} must set ipBlock, namespaceSelector or podSelector")
    if peer.has("ipBlock"):
        if peer.has("namespaceSelector") or peer.has("podSelector"):
            peer.problems.append(f"{peer.path}.ipBlock cannot be combined with selectors")
        block = peer.sub("ipBlock", ("cidr", "except"))
        _check_cidr(block, f"{block.path}.cidr", block.get("cidr", "string"))
        for index, cidr in enumerate(block.get("except", "array", [])):
            _check_cidr(block, f"{block.path}.except[{index}]", cidr)
    for key in ("namespaceSelector", "podSelector"):
        if peer.has(key):
            _check_selector(peer.sub(key, ("matchLabels", "matchExpressions")))


def _check_cidr(reader: FieldReader, where: str, cidr: Any) -> None:
    try:
        ipaddress.ip_network(cidr, strict=False)
    except (TypeError, ValueError):
        reader.problems.append(f"{where} must be a CIDR such as 10.0.0.0/8, not {cidr!r}")


def _check_selector(selector: FieldReader) -> None:
    labels = selector.get("matchLabels", "object", {})
    if not all(isinstance(value, str) for value in labels.values()):
        selector.problems.append(f"{selector.path}.matchLabels values must be strings")
    for index, expression in enumerate(selector.get("matchExpressions", "array", [])):
        term = FieldReader(expression, f"{selector.path}.matchExpressions[{index}]",
                           selector.problems, ("key", "operator", "values"))
        if not term.get("key", "string"):
            term.problems.append(f"{term.path}.key is required")
        operator = term.get("operator", "string", choices=SELECTOR_OPERATORS)
        if operator is None:
            term.problems.append(f"{term.path}.operator is required")
        values = term.get("values", "array", [])
        if operator in ("In", "NotIn") and not values:
            term.problems.append(f"{term.path}.values must not be empty for operator {operator}")
        if operator in ("Exists", "DoesNotExist") and values:
            term.problems.append(f"{term.path}.values must be empty for operator {operator}")
