"""The report: report.json contract, report.md, PNG plots, terminal table, machine description."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastswitch_bench.machine import machine_description
from fastswitch_bench.report import (
    ConfigResult,
    SwapFigures,
    build_report,
    summary_table,
    write_report,
)
from fastswitch_bench.stats import BacklogInterval, ServiceEvent
from fastswitch_bench.workload import TenantSpec, synthesize

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PERCENTILE_KEYS = {"p50", "p95", "p99", "p99.9"}
WEIGHTS = {"alice": 1.0, "bob": 2.0}
BACKLOG = (BacklogInterval("alice", 0.0, 8.0), BacklogInterval("bob", 0.0, 8.0))


def _result(
    name: str, *, latency_scale: float, duration_s: float, swap: SwapFigures, **overrides
) -> ConfigResult:
    # Alice is served 10 tokens and Bob 20 every second: fair for weights 1 and 2.
    events = tuple(
        ServiceEvent(second + 0.5, tenant, tokens)
        for second in range(8)
        for tenant, tokens in (("alice", 10), ("bob", 20))
    )
    fields = {
        "name": name,
        "ttft_ms": tuple(latency_scale * v for v in range(10, 1010, 10)),
        "tbt_ms": tuple(latency_scale * v for v in (20.0, 25.0, 30.0, 400.0)),
        "e2e_ms": tuple(latency_scale * v for v in (1000.0, 2000.0)),
        "num_generated_tokens": 240,
        "duration_s": duration_s,
        "tenant_weights": WEIGHTS,
        "served_tokens_by_tenant": {"alice": 80, "bob": 160},
        "service_events": events,
        "backlog": BACKLOG,
        "swap": swap,
        "settings": {"mode": name, "block_size": 16, "policy": "trace"},
    }
    return ConfigResult(**{**fields, **overrides})


BASELINE = _result(
    "baseline",
    latency_scale=2.0,
    duration_s=10.0,
    swap=SwapFigures(12, 4000, 4000, 960, 500.0, 600.0, (1.1, 1.3, 0.9)),
)
FASTSWITCH = _result(
    "fastswitch",
    latency_scale=1.0,
    duration_s=8.0,
    swap=SwapFigures(12, 1000, 1000, 24, 0.0, 300.0, (5.0, 6.0)),
)


def _write(tmp_path: Path, results=(BASELINE, FASTSWITCH), workload=None):
    return write_report(
        tmp_path / "out",
        results,
        command="fastswitch bench --quick --out out",
        machine={"cpu_model": "test cpu", "num_cpu_cores": 2},
        workload=workload or {"description": "hand-built", "num_conversations": 2},
    )


def test_report_json_follows_the_contract(tmp_path) -> None:
    files = _write(tmp_path)
    report = json.loads(files.json_path.read_text())
    assert {"configs", "ratios", "machine", "command", "workload"} <= set(report)
    assert report["command"] == "fastswitch bench --quick --out out"
    assert report["machine"]["cpu_model"] == "test cpu"
    for name in ("baseline", "fastswitch"):
        config = report["configs"][name]
        assert PERCENTILE_KEYS <= set(config["ttft_ms"]) and PERCENTILE_KEYS <= set(
            config["tbt_ms"]
        )
        assert PERCENTILE_KEYS <= set(config["e2e_ms"])
        assert {"throughput_tokens_per_s", "swap", "fairness"} <= set(config)
        assert {"num_preemptions", "swap_out_bytes", "swap_in_bytes", "stall_ms"} <= set(
            config["swap"]
        )
    baseline = report["configs"]["baseline"]
    assert baseline["throughput_tokens_per_s"] == pytest.approx(24.0)
    assert baseline["ttft_ms"]["p50"] == pytest.approx(2 * 505.0)
    assert baseline["fairness"]["backlogged"]["jain_mean"] == pytest.approx(1.0)
    assert baseline["fairness"]["per_tenant"]["bob"]["service_share"] == pytest.approx(2 / 3)


def test_ratios_say_how_much_better_fastswitch_does(tmp_path) -> None:
    ratios = json.loads(_write(tmp_path).json_path.read_text())["ratios"]
    for key in ("ttft_p95", "ttft_p99", "tbt_p99", "tbt_p99.9", "e2e_p99"):
        assert ratios[key] == pytest.approx(2.0)
    assert ratios["throughput"] == pytest.approx(10.0 / 8.0)
    assert ratios["swap_bytes"] == pytest.approx(4.0)
    assert ratios["num_copies"] == pytest.approx(40.0)
    assert ratios["stall_ms"] is None  # FastSwitch never stalled: no finite ratio


def test_markdown_puts_both_configurations_side_by_side(tmp_path) -> None:
    files = _write(tmp_path)
    markdown = files.markdown_path.read_text()
    assert "| metric | baseline | fastswitch | baseline / fastswitch |" in markdown
    assert "TBT p99.9 (ms)" in markdown and "stall (ms)" in markdown and "Jain" in markdown
    assert "fastswitch bench --quick --out out" in markdown and "test cpu" in markdown
    for plot_path in files.plot_paths:
        assert f"({plot_path.name})" in markdown


def test_plots_are_png_files(tmp_path) -> None:
    files = _write(tmp_path)
    assert {p.name for p in files.plot_paths} == {
        "ttft_cdf.png",
        "tbt_cdf.png",
        "switch_cost.png",
        "tenant_service.png",
        "swap_bandwidth.png",
    }
    for plot_path in files.plot_paths:
        assert plot_path.read_bytes()[:8] == PNG_MAGIC


def test_a_configuration_without_samples_reports_nulls_and_still_plots(tmp_path) -> None:
    quiet = _result(
        "fastswitch",
        latency_scale=1.0,
        duration_s=8.0,
        swap=SwapFigures(0, 0, 0, 0, 0.0, 0.0),
        tbt_ms=(),
        service_events=(),
    )
    files = _write(tmp_path, (BASELINE, quiet))
    report = json.loads(files.json_path.read_text())
    assert report["configs"]["fastswitch"]["tbt_ms"]["p99"] is None
    assert report["ratios"]["tbt_p99"] is None and report["ratios"]["swap_bytes"] is None
    assert report["configs"]["fastswitch"]["fairness"]["backlogged"]["jain_mean"] is None
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in files.plot_paths)


def test_report_needs_both_baseline_and_fastswitch_and_keeps_extra_configs() -> None:
    arguments = {"command": "c", "machine": {}, "workload": {}}
    with pytest.raises(ValueError, match="fastswitch"):
        build_report([BASELINE], **arguments)
    ablation = _result("no-reuse", latency_scale=1.5, duration_s=9.0, swap=FASTSWITCH.swap)
    report = build_report([BASELINE, FASTSWITCH, ablation], **arguments)
    assert set(report["configs"]) == {"baseline", "fastswitch", "no-reuse"}


def test_summary_table_lists_headline_figures_per_configuration() -> None:
    table = summary_table([BASELINE, FASTSWITCH])
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "baseline", "fastswitch", "ratio"]
    ttft_p95 = next(line for line in lines if line.startswith("TTFT p95"))
    assert ttft_p95.split()[-3:] == ["1,901.0", "950.5", "2.00x"]
    assert any(line.startswith("stall (ms)") for line in lines)


def test_machine_description_reads_cpu_and_memory_from_proc(tmp_path) -> None:
    (tmp_path / "cpuinfo").write_text(
        "processor\t: 0\nmodel\t\t: 85\nmodel name\t: Example CPU @ 2GHz\n"
    )
    (tmp_path / "meminfo").write_text("MemTotal:       2048 kB\nMemFree:        1 kB\n")
    machine = machine_description(proc_dir=tmp_path)
    assert machine["cpu_model"] == "Example CPU @ 2GHz"
    assert machine["memory_bytes"] == 2048 * 1024
    assert machine["num_cpu_cores"] >= 1 and machine["torch_version"]
    json.dumps(machine)  # goes into report.json as is
    bare = machine_description(proc_dir=tmp_path / "absent")
    assert bare["cpu_model"] is None and bare["memory_bytes"] is None


def test_percentiles_too_few_samples_support_are_flagged_in_json_and_markdown(tmp_path) -> None:
    # 65 TTFTs, as in a --quick run: p99 needs 100 samples for one beyond it, p99.9 1,000.
    small = {"ttft_ms": tuple(float(v) for v in range(1, 66))}
    results = (
        _result("baseline", latency_scale=2.0, duration_s=10.0, swap=BASELINE.swap, **small),
        _result("fastswitch", latency_scale=1.0, duration_s=8.0, swap=FASTSWITCH.swap, **small),
    )
    files = _write(tmp_path, results)
    report = json.loads(files.json_path.read_text())
    ttft = report["configs"]["baseline"]["ttft_ms"]
    assert ttft["num_samples"] == 65 and PERCENTILE_KEYS <= set(ttft)
    assert ttft["unsupported_percentiles"] == ["p99", "p99.9"]
    assert report["configs"]["baseline"]["tbt_ms"]["unsupported_percentiles"] == [
        "p95",
        "p99",
        "p99.9",
    ]
    assert report["min_samples_by_percentile"] == {"p50": 2, "p95": 20, "p99": 100, "p99.9": 1000}
    markdown = files.markdown_path.read_text()
    p999_row = next(line for line in markdown.splitlines() if line.startswith("| TTFT p99.9"))
    assert p999_row.count("(n=65: ~max)") == 2 and "x (~max)" in p999_row
    p95_row = next(line for line in markdown.splitlines() if line.startswith("| TTFT p95"))
    assert "~max" not in p95_row
    assert "| TTFT samples | 65 | 65 |" in markdown
    assert "p99.9: 1,000" in markdown  # the legend says what each percentile needs


def test_a_large_sample_supports_every_percentile(tmp_path) -> None:
    many = {"ttft_ms": tuple(float(v) for v in range(1000))}
    results = (
        _result("baseline", latency_scale=1.0, duration_s=10.0, swap=BASELINE.swap, **many),
        _result("fastswitch", latency_scale=1.0, duration_s=8.0, swap=FASTSWITCH.swap, **many),
    )
    report = json.loads(_write(tmp_path, results).json_path.read_text())
    assert report["configs"]["baseline"]["ttft_ms"]["unsupported_percentiles"] == []


def test_fairness_is_labelled_by_policy_and_says_when_nobody_was_backlogged(tmp_path) -> None:
    under_vtc = _result(
        "fastswitch",
        latency_scale=1.0,
        duration_s=8.0,
        swap=FASTSWITCH.swap,
        backlog=(BacklogInterval("alice", 0.0, 8.0),),  # bob never waits alongside alice
        settings={"mode": "fastswitch", "policy": "vtc"},
    )
    files = _write(tmp_path, (BASELINE, under_vtc))
    configs = json.loads(files.json_path.read_text())["configs"]
    trace, vtc = configs["baseline"]["fairness"], configs["fastswitch"]["fairness"]
    assert (trace["policy"], trace["is_fairness_policy"]) == ("trace", False)
    assert "service, not fairness" in trace["note"] and "8.0 s of 10.0 s (80%" in trace["note"]
    assert (vtc["policy"], vtc["is_fairness_policy"]) == ("vtc", True)
    assert vtc["backlogged"]["num_intervals"] == 0 and vtc["backlogged"]["jain_mean"] is None
    assert "is a fairness policy" in vtc["note"] and "not measured" in vtc["note"]
    markdown = files.markdown_path.read_text()
    assert f"- baseline: {trace['note']}" in markdown
    assert f"- fastswitch: {vtc['note']}" in markdown


def test_markdown_states_the_measured_turns_and_labels_the_configured_mean(tmp_path) -> None:
    # The --quick shape: 16 conversations fitted to 640 tokens of context.
    workload = synthesize(
        num_conversations=16,
        arrival_rate_per_s=2.0,
        tenants=(TenantSpec("alice", 1.0, 1.0), TenantSpec("bob", 2.0, 1.0)),
        seed=0,
        length_scale=0.2,
        max_context_tokens=640,
    ).summary()
    measured = workload["mean_turns_per_conversation"]
    assert measured < 5.0  # fewer than the configured 5.5, which is the point of the statement
    markdown = _write(tmp_path, workload=workload).markdown_path.read_text()
    assert f"measured mean {measured:.2f} ({workload['num_turns']} turns in 16 conversations)" in (
        markdown
    )
    assert "configured mean 5.5 (the generator's target, not a measurement)" in markdown
    assert f"the fit dropped {workload['num_turns_dropped_to_fit_context']} turns" in markdown
    assert "mean 5.5 turns" not in markdown


def test_importing_the_report_modules_loads_neither_matplotlib_nor_torch() -> None:
    # What `fastswitch bench --help` imports must not pay for plotting or the model runtime.
    code = (
        "import sys\n"
        "import fastswitch_bench.collect, fastswitch_bench.machine, fastswitch_bench.replay\n"
        "import fastswitch_bench.report, fastswitch_bench.sharegpt, fastswitch_bench.workload\n"
        "print(sorted(m for m in ('matplotlib', 'torch') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "[]"
