"""`fastswitch bench` end to end on a tiny model: both configurations, one report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_writes_a_report_comparing_both_configurations(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "fastswitch_cli.main", "bench", "--quick", "--model", "tiny",
         "--num-conversations", "3", "--rate", "20", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TTFT p95" in result.stdout and "report:" in result.stdout
    report = json.loads((out / "report.json").read_text())
    for name in ("baseline", "fastswitch"):
        config = report["configs"][name]
        assert set(config["ttft_ms"]) >= {"p50", "p95", "p99", "p99.9"}
        assert set(config["tbt_ms"]) >= {"p50", "p95", "p99", "p99.9"}
        assert config["ttft_ms"]["num_samples"] > 0
        assert config["settings"]["num_failed_turns"] == 0
    assert report["configs"]["baseline"]["settings"]["mode"] == "baseline"
    assert "machine" in report and report["command"].startswith("fastswitch bench")
    assert (out / "report.md").read_text().count("fastswitch") >= 1
    assert (out / "ttft_cdf.png").read_bytes()[:4] == b"\x89PNG"
