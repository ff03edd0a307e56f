"""The chart, rendered by Helm's own engine (helm-python-sdk), and the CRD as a validator."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "fastswitch"
RELEASE, NAMESPACE = "fs", "fastswitch-system"


@pytest.fixture(scope="session")
def chart_dir() -> str:
    return str(CHART_DIR)


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture
def render(chart: helm.Chart) -> Callable[..., dict[str, list[dict[str, Any]]]]:
    """values -> {template file name: [manifests]} (empty templates left out)."""

    def run(values: dict[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE)
        manifests = {}
        for path, text in rendered.items():
            if path.endswith(".txt"):
                continue
            docs = [doc for doc in yaml.safe_load_all(text) if doc]
            if docs:
                manifests[path.rsplit("/", 1)[-1]] = docs
        return manifests

    return run


def _as_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """An OpenAPI v3 structural schema as a draft-4 JSON schema that, like the API server's
    pruning, refuses fields the schema does not declare."""
    result = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(result)
    return result


@pytest.fixture(scope="module")
def crd(chart: helm.Chart) -> dict[str, Any]:
    (only,) = chart.crds
    return yaml.safe_load(only["data"])


@pytest.fixture(scope="module")
def validate_cluster(crd: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Raise jsonschema.ValidationError unless a FastSwitchCluster fits the CRD's schema."""
    (version,) = crd["spec"]["versions"]
    validator = jsonschema.Draft4Validator(_as_json_schema(version["schema"]["openAPIV3Schema"]))
    return validator.validate
