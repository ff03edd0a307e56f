"""The report's figures: what each axis shows, read off the matplotlib objects before saving."""

from __future__ import annotations

import pytest

from fastswitch_bench.plots import latency_cdf_figure, switch_cost_figure, tenant_service_figure
from fastswitch_bench.report import ConfigResult, SwapFigures, build_report
from fastswitch_bench.stats import BacklogInterval, ServiceEvent

WEIGHTS = {"alice": 1.0, "bob": 2.0}


def _result(name: str, *, ttft_ms, swap: SwapFigures, backlog, policy: str) -> ConfigResult:
    return ConfigResult(
        name=name,
        ttft_ms=ttft_ms,
        tbt_ms=(10.0, 20.0),
        e2e_ms=(100.0,),
        num_generated_tokens=30,
        duration_s=4.0,
        tenant_weights=WEIGHTS,
        served_tokens_by_tenant={"alice": 10, "bob": 20},
        service_events=(ServiceEvent(1.0, "alice", 10), ServiceEvent(1.5, "bob", 20)),
        backlog=backlog,
        swap=swap,
        settings={"mode": name, "policy": policy},
    )


CONTENDED = (BacklogInterval("alice", 0.0, 2.0), BacklogInterval("bob", 0.0, 2.0))
BASELINE = _result(
    "baseline",
    ttft_ms=tuple(float(v) for v in range(1, 66)),
    swap=SwapFigures(4, 3000, 1000, 960, 1500.0, 1800.0),
    backlog=CONTENDED,
    policy="trace",
)
FASTSWITCH = _result(
    "fastswitch",
    ttft_ms=tuple(float(v) for v in range(1, 66)),
    swap=SwapFigures(4, 1000, 1000, 24, 3.0, 900.0),
    backlog=(BacklogInterval("alice", 0.0, 2.0),),
    policy="vtc",
)
RESULTS = (BASELINE, FASTSWITCH)
REPORT = build_report(RESULTS, command="c", machine={}, workload={})


def test_latency_cdf_uses_log_time_and_a_log_tail_panel_with_percentile_lines() -> None:
    cdf_axes, tail_axes = latency_cdf_figure(RESULTS, "ttft_ms", "ttft (ms)").axes
    assert cdf_axes.get_xscale() == "log"
    assert (tail_axes.get_xscale(), tail_axes.get_yscale()) == ("log", "log")
    # The p99.9 line stays in view even though 65 samples cannot reach it.
    assert tail_axes.get_ylim()[0] <= 1e-3 / 2
    line_levels = {round(line.get_ydata()[0], 6) for line in tail_axes.lines[len(RESULTS) :]}
    assert line_levels == {0.05, 0.01, 0.001}
    assert [t.get_text() for t in tail_axes.get_legend().get_texts()] == [
        "baseline (n=65)",
        "fastswitch (n=65)",
    ]
    # The tail ends at 1/n: the largest sample is the last point, at 1/65 of the samples.
    assert tail_axes.lines[0].get_ydata()[-1] == pytest.approx(1 / 65)


def test_switch_cost_compares_copy_calls_stall_and_swap_bytes() -> None:
    copies_axes, stall_axes, bytes_axes = switch_cost_figure(RESULTS, REPORT["ratios"]).axes
    assert "copy calls" in copies_axes.get_title() and "40.00x" in copies_axes.get_title()
    assert [bar.get_height() for bar in copies_axes.patches] == [960, 24]
    assert "stall" in stall_axes.get_title() and "500.00x" in stall_axes.get_title()
    assert [bar.get_height() for bar in stall_axes.patches] == pytest.approx([1.5, 0.003])
    assert "swap traffic" in bytes_axes.get_title() and "2.00x" in bytes_axes.get_title()
    # Swap-out bars, then swap-in bars stacked on them: 4,000 bytes against 2,000.
    tops = [bar.get_y() + bar.get_height() for bar in bytes_axes.patches[2:]]
    assert tops == pytest.approx([4000 / 2**20, 2000 / 2**20])


def test_tenant_service_panels_say_what_policy_ran_and_whether_it_shows_fairness() -> None:
    baseline_axes, fastswitch_axes = tenant_service_figure(
        RESULTS, REPORT["configs"], window_s=None
    ).axes
    baseline_title = " ".join(baseline_axes.get_title(loc="left").split())
    assert baseline_title.startswith("baseline: policy trace")
    assert "service, not fairness" in baseline_title
    assert len(baseline_axes.patches) == 1  # the one contended span is shaded
    fastswitch_title = " ".join(fastswitch_axes.get_title(loc="left").split())
    assert "is a fairness policy" in fastswitch_title
    assert "not measured" in fastswitch_title and not fastswitch_axes.patches
