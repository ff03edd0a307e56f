"""benchmarks/fairness.py end to end with simulated workers and tiny durations: every scenario
runs and the report has every figure it promises (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def test_fairness_runs_every_scenario_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "fairness.json"
    command = [sys.executable, str(BENCHMARKS_DIR / "fairness.py"), "--simulate",
               "--duration-s", "4", "--warmup-s", "1", "--window-s", "1",
               "--modes", "fastswitch", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "jain min" in done.stdout and "newcomer" in done.stdout
    runs = {(r["scenario"], r["policy"]): r for r in json.loads(out.read_text())["runs"]}
    assert set(runs) == {("fairness", "vtc"), ("fairness", "fcfs"), ("sticky", "vtc"),
                         ("newcomer", "vtc")}
    for run in runs.values():
        assert run["num_samples"] > 0 and sum(run["num_finished"].values()) > 0
        assert not run["errors"]
        assert run["bound"] > 0 and run["max_backlogged_gap"] >= 0
        assert 0 < run["ttft_ms"]["p50"] <= run["ttft_ms"]["p99"]
        assert 0 <= run["idle_while_queued_fraction"] <= 1
    assert set(runs["fairness", "vtc"]["shares"]) == {"A", "B", "C"}
    assert all(0 < j <= 1 for j in runs["fairness", "vtc"]["window_jain"])
    assert set(runs["sticky", "vtc"]["mean_running"]) == {"worker-0", "worker-1"}
    assert "newcomer_s_to_90pct" in runs["newcomer", "vtc"]
