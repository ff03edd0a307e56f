"""benchmarks/scale.py end to end on a tiny cluster: two simulated workers, one frontend, the
real scheduler, each a process; the report has every figure it promises (no timing is
asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def test_scale_drives_simulated_workers_through_the_frontend_and_reports(tmp_path: Path) -> None:
    command = [sys.executable, str(BENCHMARKS_DIR / "scale.py"), "--workers", "2",
               "--frontends", "1", "--streams", "4", "--max-tokens", "8", "--duration-s", "3",
               "--warmup-s", "1", "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "us/token" in done.stdout
    result = json.loads((tmp_path / "scale_2w_1f_4s.json").read_text())
    assert result["num_workers_ready"] == 2
    assert result["num_finished_requests"] > 0
    assert result["codes"] == {"OK": result["num_finished_requests"]}  # nothing failed
    assert result["num_tokens"] > 0 and result["delivered_tokens_per_s"] > 0
    assert result["offered_tokens_per_s"] == 2 * 32 * 1000 / 20
    for figure in ("ttft_ms", "itl_ms"):
        assert 0 < result[figure]["p50"] <= result[figure]["p99"]
    assert set(result["cpu"]) == {"scheduler", "frontend-0", "frontends (all)", "workers (all)",
                                  "clients (all)"}
    for name in ("scheduler", "frontend-0", "workers (all)"):
        cpu = result["cpu"][name]
        assert cpu["cpu_s"] > 0 and math.isfinite(cpu["us_per_token"]), name
    assert result["record"]["machine"]["num_cpu_cores"] >= 1
