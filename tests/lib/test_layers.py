"""The architecture's import rules (pyproject [tool.importlinter]) hold."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = ["fastswitch_cli", "fastswitch_bench", "fastswitch_stack",
          "fastswitch_frontend | fastswitch_scheduler | fastswitch_worker | fastswitch_kvstore | fastswitch_operator",
          "fastswitch"]


def contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_the_layers_are_cli_then_benchmarks_then_stack_then_services_then_lib() -> None:
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    assert layers["layers"] == LAYERS
    root_packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"][
        "root_packages"]
    layered = {name.strip() for layer in LAYERS for name in layer.split("|")}
    assert layered == set(root_packages)  # every package has its layer


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([lint_imports], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    for contract in contracts():
        assert f"{contract['name']} KEPT" in result.stdout, contract["name"]
