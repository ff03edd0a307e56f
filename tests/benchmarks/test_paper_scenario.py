"""The paper scenario: its workload (turns, lengths, history growth, Poisson arrivals,
seeds), the mapping of the paper's per-iteration priority changes onto scheduler ticks, the
per-request time breakdown of the report, and `fastswitch bench --scenario paper` on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastswitch_bench.breakdown import (
    PHASES,
    RequestPhases,
    breakdown_markdown,
    nearest_rank,
    time_breakdown,
)
from fastswitch_bench.scenarios import (
    GIB,
    PAPER_CPU,
    PAPER_CUDA,
    QUICK,
    scenario_for,
    scenario_mapping,
    with_overrides,
)
from fastswitch_bench.workload import TenantSpec, synthesize

TENANTS = (TenantSpec("alpha", 1.0, 0.5), TenantSpec("beta", 1.0, 0.3), TenantSpec("gamma", 2.0, 0.2))


def paper_workload(num_conversations: int, seed: int, scenario=PAPER_CUDA):
    return synthesize(num_conversations=num_conversations,
                      arrival_rate_per_s=scenario.arrival_rate_per_s, tenants=TENANTS, seed=seed,
                      length_scale=scenario.length_scale,
                      mean_think_time_s=scenario.mean_think_time_s,
                      max_context_tokens=scenario.max_context_tokens)


@pytest.fixture(scope="module")
def workload():
    return paper_workload(3000, seed=11)


def test_paper_conversations_average_5_5_turns(workload) -> None:
    num_turns = np.array([len(c.turns) for c in workload.conversations])
    assert num_turns.mean() == pytest.approx(5.5, abs=0.25)
    # The 8k context keeps nearly every drawn turn: the realised mean is the paper's.
    assert workload.num_turns_dropped / num_turns.sum() < 0.03


def test_paper_later_turns_carry_thousands_of_tokens_of_history(workload) -> None:
    contexts_by_turn: dict[int, list[int]] = {}
    for conversation in workload.conversations:
        context = 0
        for index, turn in enumerate(conversation.turns):
            context += turn.prompt_tokens + turn.output_tokens
            contexts_by_turn.setdefault(index, []).append(context)
    means = [np.mean(contexts_by_turn[i]) for i in range(8)]
    assert all(later > earlier for earlier, later in zip(means, means[1:], strict=False))
    assert means[7] > 2000  # by the eighth turn, thousands of tokens of history
    first_turns = [c.turns[0] for c in workload.conversations]
    # ShareGPT-like lengths: answers of a few hundred tokens, follow-ups shorter than openers.
    assert 150 < np.mean([t.output_tokens for t in first_turns]) < 320
    follow_ups = [t.prompt_tokens for c in workload.conversations for t in c.turns[1:]]
    assert np.mean(follow_ups) < np.mean([t.prompt_tokens for t in first_turns])


def test_paper_arrivals_are_poisson_at_the_scenario_rate(workload) -> None:
    arrivals = np.array([c.arrival_s for c in workload.conversations])
    gaps = np.diff(arrivals)
    assert gaps.mean() == pytest.approx(1 / PAPER_CUDA.arrival_rate_per_s, rel=0.06)
    # Exponential gaps: the standard deviation equals the mean (coefficient of variation 1).
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.08)


def test_paper_workload_is_reproducible_by_seed() -> None:
    assert paper_workload(50, seed=3) == paper_workload(50, seed=3)
    assert paper_workload(50, seed=3) != paper_workload(50, seed=4)


def test_scenarios_pick_the_8b_shape_on_cuda_and_a_scaled_model_on_cpu() -> None:
    cuda = scenario_for("paper", is_cuda=True)
    assert (cuda.model, cuda.dtype) == ("llama3-8b", "bfloat16")
    assert 2 * GIB <= cuda.kv_cache_bytes <= 8 * GIB and cuda.host_kv_bytes >= 4 * cuda.kv_cache_bytes
    assert cuda.replay_deadline_s is not None
    assert scenario_for("paper", is_cuda=False) is PAPER_CPU
    # On CPU both configurations send every turn: the same requests in both.
    assert PAPER_CPU.replay_deadline_s is None
    assert scenario_for("quick", is_cuda=False) is QUICK
    assert scenario_for("quick", is_cuda=True).model == "bench-8b-kv"
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_for("huge", is_cuda=False)
    assert with_overrides(PAPER_CPU, arrival_rate_per_s=None, num_conversations=5) == \
        PAPER_CPU.__class__(**{**PAPER_CPU.__dict__, "num_conversations": 5})


def test_scenario_mapping_states_a_cpu_run_is_scaled() -> None:
    cpu = scenario_mapping(PAPER_CPU, device="cpu", tick_ms=20, update_probability=0.04,
                           pattern="markov")
    assert cpu["is_scaled_for_cpu"] and "CPU-scaled" in cpu["here"]["model"]
    assert "per engine iteration" in cpu["here"]["priorities"]
    cuda = scenario_mapping(PAPER_CUDA, device="cuda", tick_ms=20,
                            update_probability=0.02, pattern="random")
    assert not cuda["is_scaled_for_cpu"] and "random" in cuda["here"]["priorities"]


def _phases(**ms: float) -> dict[str, float]:
    return {p: ms.get(p, 0.0) for p in PHASES}


def test_breakdown_means_and_the_p99_requests() -> None:
    requests = [RequestPhases(f"r{i}", ttft_ms=10.0 + i, e2e_ms=100.0 + (50 - i),
                              phases_ms=_phases(running=100.0, placement_wait=float(i)))
                for i in range(50)]
    requests.append(RequestPhases("slow-start", 900.0, 120.0,
                                  _phases(swapped_out=800.0, running=100.0), num_preemptions=2))
    breakdown = time_breakdown(requests)
    assert breakdown["num_requests"] == 51
    assert breakdown["mean_ms"]["running"] == pytest.approx(100.0)
    assert breakdown["mean_ms"]["swapped_out"] == pytest.approx(800.0 / 51)
    assert breakdown["p99_ttft_request"]["request_id"] == "slow-start"
    assert breakdown["p99_ttft_request"]["num_preemptions"] == 2
    assert breakdown["p99_e2e_request"]["request_id"] == "r0"  # e2e 150, the largest
    assert sum(breakdown["mean_share"].values()) == pytest.approx(1.0)
    assert nearest_rank([5.0, 1.0, 3.0], 50) == 2 and nearest_rank([5.0, 1.0, 3.0], 99) == 0
    assert time_breakdown([])["mean_ms"] is None


def test_breakdown_markdown_names_where_the_p99_request_spent_its_time() -> None:
    requests = [RequestPhases("a", 10.0, 50.0, _phases(running=40.0, swapped_out=10.0)),
                RequestPhases("b", 500.0, 900.0, _phases(swapped_out=700.0, running=200.0))]
    configs = {"baseline": {"time_breakdown": time_breakdown(requests)},
               "fastswitch": {"time_breakdown": time_breakdown([])}}
    text = "\n".join(breakdown_markdown(configs))
    assert "| swapped out | 355.0 | 700.0 | 700.0 |" in text
    assert "baseline: the p99-TTFT request (b) spent its time mostly swapped out 78%" in text
    assert "fastswitch mean" not in text  # no completed request: left out


def test_bench_paper_scenario_on_cpu_writes_the_contract_and_the_breakdown(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "fastswitch_cli.main", "bench", "--scenario", "paper",
         "--device", "cpu", "--model", "tiny", "--num-conversations", "2", "--rate", "20",
         "--deadline-s", "4", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scenario"]["name"] == "paper" and report["scenario"]["is_scaled_for_cpu"]
    for name in ("baseline", "fastswitch"):
        config = report["configs"][name]
        for metric in ("ttft_ms", "tbt_ms"):
            assert set(config[metric]) >= {"p50", "p95", "p99", "p99.9"}
        assert "throughput_tokens_per_s" in config and "swap" in config and "fairness" in config
        breakdown = config["time_breakdown"]
        assert breakdown["num_requests"] > 0
        assert breakdown["mean_ms"]["running"] > 0
        assert set(breakdown["p99_ttft_request"]["phases_ms"]) == set(PHASES)
        assert config["settings"]["trace_update_probability_per_iteration"] == 0.04
        assert config["settings"]["trace_pattern"] == "markov"
        assert config["settings"]["num_kv_exhausted_preemptions"] >= 0  # the workers' own
        # Every turn's latencies, as the percentiles saw them (what pooling runs needs).
        assert len(config["turns"]) == config["ttft_ms"]["num_samples"]
        assert sum(len(t["tbt_ms"]) for t in config["turns"]) == config["tbt_ms"]["num_samples"]
    assert set(report["ratio_intervals"]) >= {"ttft_p50", "tbt_p50", "tbt_p99.9"}
    markdown = (out / "report.md").read_text()
    assert "## Where the time went" in markdown and "## Scenario: paper" in markdown
