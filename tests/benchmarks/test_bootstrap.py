"""Bootstrap intervals of the latency ratios, per-turn samples in the report, pooling runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastswitch_bench.bootstrap import TurnLatencies, ratio_intervals
from fastswitch_bench.collect import config_result
from fastswitch_bench.pooling import PoolingError, pool_reports
from fastswitch_bench.replay import ReplayLog, TurnRecord
from fastswitch_bench.report import ConfigResult, SwapFigures, build_report, write_report

REPO = Path(__file__).resolve().parents[2]
NO_SWAPS = SwapFigures(0, 0, 0, 0, 0.0, 0.0)


def _turns(num_turns: int, *, scale: float, seed: int = 0) -> list[TurnLatencies]:
    """Turns with log-normal TTFTs and five log-normal gaps each, every latency x `scale`."""
    rng = np.random.default_rng(seed)
    return [TurnLatencies(f"t{seed}-{i}", scale * float(rng.lognormal(4.0, 1.0)),
                          tuple((scale * rng.lognormal(3.0, 0.5, size=5)).tolist()))
            for i in range(num_turns)]


def test_a_uniform_speedup_has_a_tight_interval_at_its_ratio() -> None:
    constant = [TurnLatencies(f"t{i}", 100.0, (40.0, 40.0)) for i in range(500)]
    halved = [TurnLatencies(f"t{i}", 50.0, (20.0, 20.0)) for i in range(500)]
    intervals = ratio_intervals(constant, halved, num_resamples=50)
    for key in ("ttft_p50", "ttft_p95", "ttft_p99", "tbt_p50", "tbt_p99.9"):
        assert intervals[key] == pytest.approx([2.0, 2.0])


def test_the_same_latencies_give_an_interval_around_one() -> None:
    turns = _turns(300, scale=1.0)
    intervals = ratio_intervals(turns, turns, num_resamples=300)
    for key in ("ttft_p50", "ttft_p95", "tbt_p50", "tbt_p95"):
        low, high = intervals[key]
        assert low < 1.0 < high


def test_a_percentile_too_few_samples_stand_behind_gets_no_interval() -> None:
    # 115 turns: p99 has one sample beyond it, p99.9 is the maximum; 575 gaps support p99.
    turns = _turns(115, scale=1.0)
    intervals = ratio_intervals(turns, _turns(115, scale=0.5), num_resamples=100)
    assert intervals["ttft_p99"] is not None and intervals["tbt_p99"] is not None
    assert intervals["ttft_p99.9"] is None and intervals["tbt_p99.9"] is None
    assert all(v is None for v in ratio_intervals([], turns, num_resamples=10).values())


def test_intervals_are_reproducible_and_reject_bad_settings() -> None:
    a, b = _turns(150, scale=1.0, seed=1), _turns(150, scale=0.8, seed=2)
    assert ratio_intervals(a, b, num_resamples=80) == ratio_intervals(a, b, num_resamples=80)
    with pytest.raises(ValueError, match="level"):
        ratio_intervals(a, b, level=1.0)
    with pytest.raises(ValueError, match="num_resamples"):
        ratio_intervals(a, b, num_resamples=0)


def test_a_turns_gaps_are_resampled_together() -> None:
    # Each side: 120 turns of 20 gaps, 8 of them (6.7%) all long. Drawing turns moves the
    # share of long gaps by +-2.2 points (a draw of <= 6 long turns puts p95 among the short
    # gaps), so the p95 ratio swings; drawing single gaps would move it by +-0.5 points and
    # keep p95 long on both sides, the ratio at 2.
    def side(long_ms: float) -> list[TurnLatencies]:
        return [TurnLatencies(f"t{i}", 10.0, (long_ms,) * 20 if i < 8 else (10.0,) * 20)
                for i in range(120)]
    low, high = ratio_intervals(side(1000.0), side(500.0), num_resamples=400)["tbt_p95"]
    assert low < 1.0 and high > 2.0


def test_collected_turns_match_the_flat_samples() -> None:
    log = ReplayLog([
        TurnRecord("conv-0", "alice", 0, sent_s=1.0, token_times_s=[1.5, 1.6, 2.0], done_s=2.0),
        TurnRecord("conv-0", "alice", 1, sent_s=3.0, token_times_s=[3.25], done_s=3.3),
        TurnRecord("conv-1", "alice", 0, sent_s=3.0, error="INVALID_ARGUMENT: too long", done_s=3.1),
    ], duration_s=4.0)
    result = config_result("fastswitch", log, weights={"alice": 1.0}, swaps={}, bandwidth=(),
                           settings={})
    assert [t.request_id for t in result.turns] == ["conv-0-turn0", "conv-0-turn1"]
    assert [t.ttft_ms for t in result.turns] == pytest.approx(list(result.ttft_ms))
    assert [g for t in result.turns for g in t.tbt_ms] == pytest.approx(list(result.tbt_ms))
    assert result.turns[0].tbt_ms == pytest.approx((100.0, 400.0))


def _result(name: str, turns: list[TurnLatencies]) -> ConfigResult:
    return ConfigResult(
        name=name, ttft_ms=[t.ttft_ms for t in turns], tbt_ms=[g for t in turns for g in t.tbt_ms],
        e2e_ms=[t.ttft_ms + sum(t.tbt_ms) for t in turns], num_generated_tokens=600,
        duration_s=10.0, tenant_weights={"alice": 1.0}, served_tokens_by_tenant={"alice": 600},
        service_events=(), backlog=(), swap=NO_SWAPS, turns=turns)


def _report(scale: float, *, seed: int, workload: dict | None = None) -> dict:
    results = [_result("baseline", _turns(120, scale=scale, seed=seed)),
               _result("fastswitch", _turns(120, scale=1.0, seed=seed + 1))]
    return json.loads(json.dumps(build_report(
        results, command="fastswitch bench", machine={"cpu_model": "test cpu"},
        workload=workload or {"description": "hand-built", "seed": 0})))


def test_the_report_records_turns_and_intervals(tmp_path) -> None:
    report = _report(2.0, seed=0)
    assert len(report["configs"]["baseline"]["turns"]) == 120
    assert report["configs"]["fastswitch"]["turns"][0].keys() == {"request_id", "ttft_ms", "tbt_ms"}
    low, high = report["ratio_intervals"]["ttft_p50"]
    assert low <= report["ratios"]["ttft_p50"] <= high
    assert report["ratio_intervals"]["ttft_p99.9"] is None  # 120 turns: the maximum
    assert "bootstrap" in report["ratio_intervals_note"]
    files = write_report(tmp_path / "out", [_result("baseline", _turns(120, scale=2.0)),
                                            _result("fastswitch", _turns(120, scale=1.0))],
                         command="fastswitch bench", machine={}, workload={})
    markdown = files.markdown_path.read_text()
    assert "2.00x [" in markdown and "bootstrap interval" in markdown


def test_results_without_turns_report_no_intervals() -> None:
    results = [ConfigResult(**{**_result(name, _turns(50, scale=1.0)).__dict__, "turns": ()})
               for name in ("baseline", "fastswitch")]
    report = build_report(results, command="c", machine={}, workload={})
    assert "ratio_intervals" not in report and report["configs"]["baseline"]["turns"] == []


def test_pooling_adds_up_the_runs_and_keeps_each_runs_ratios() -> None:
    reports = [_report(2.0, seed=0), _report(0.9, seed=5)]
    pooled = pool_reports(reports, names=["run1", "run2"])
    assert pooled["configs"]["baseline"]["ttft_ms"]["num_samples"] == 240
    assert pooled["configs"]["fastswitch"]["tbt_ms"]["num_samples"] == 240 * 5
    assert [run["ttft_p50"] for run in pooled["per_run_ratios"]] == pytest.approx(
        [r["ratios"]["ttft_p50"] for r in reports])
    assert pooled["num_runs_every_ratio_at_least_1"] == 1  # run2's baseline is faster
    assert pooled["ratio_intervals"]["ttft_p99"] is not None  # 240 turns support p99


def test_pooling_refuses_other_workloads_or_setups_and_reports_without_turns() -> None:
    with pytest.raises(PoolingError, match="different workload"):
        pool_reports([_report(2.0, seed=0), _report(2.0, seed=0, workload={"seed": 1})],
                     names=["a", "b"])
    markov, random_pattern = _report(2.0, seed=0), _report(2.0, seed=0)
    markov["configs"]["baseline"]["settings"]["trace_pattern"] = "markov"
    random_pattern["configs"]["baseline"]["settings"]["trace_pattern"] = "random"
    with pytest.raises(PoolingError, match="trace_pattern 'random'"):
        pool_reports([markov, random_pattern], names=["markov", "random"])
    random_pattern["command"] = "fastswitch bench --trace-pattern random --out elsewhere"
    with pytest.raises(PoolingError, match="ran `fastswitch bench --trace-pattern random"):
        pool_reports([_report(2.0, seed=0), random_pattern], names=["markov", "random"])
    elsewhere = _report(1.5, seed=3)
    elsewhere["command"] = "fastswitch bench --out=run2"  # only --out differs: poolable
    assert pool_reports([_report(2.0, seed=0), elsewhere], names=["a", "b"])["runs"] == ["a", "b"]
    old = _report(2.0, seed=0)
    old["configs"]["fastswitch"].pop("turns")
    with pytest.raises(PoolingError, match="no per-turn samples"):
        pool_reports([old], names=["old"])


def test_the_pooling_script_prints_and_writes_the_pooled_figures(tmp_path) -> None:
    for i, scale in enumerate((2.0, 1.5)):
        run = tmp_path / f"run{i}"
        run.mkdir()
        (run / "report.json").write_text(json.dumps(_report(scale, seed=i)))
    out = tmp_path / "pooled.json"
    completed = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pool_bench_reports.py"),
         str(tmp_path / "run0"), str(tmp_path / "run1"), "--out", str(out)],
        capture_output=True, text=True, check=True, cwd=REPO)
    assert "TTFT p50 (n=240)" in completed.stdout and "runs with every latency ratio >= 1: 2 of 2" in completed.stdout
    assert json.loads(out.read_text())["runs"] == ["run0", "run1"]
    missing = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "pool_bench_reports.py"), str(tmp_path)],
        capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "report.json" in missing.stderr
