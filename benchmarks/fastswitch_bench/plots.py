"""PNG plots of the report. Uses matplotlib's object API with the Agg canvas directly, so it
never touches pyplot's global backend and works headless.

Each plot is built by a pure `*_figure` function (tests inspect its axes) and saved by
`write_plots`. Import this module only when plotting: matplotlib takes a while to load.
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fastswitch_bench.results import ConfigResult
from fastswitch_bench.stats import DEFAULT_PERCENTILES, backlogged_fairness, cdf, percentile_key

TTFT_CDF_FILE = "ttft_cdf.png"
TBT_CDF_FILE = "tbt_cdf.png"
SWITCH_COST_FILE = "switch_cost.png"
TENANT_SERVICE_FILE = "tenant_service.png"
SWAP_BANDWIDTH_FILE = "swap_bandwidth.png"
_DPI = 110
MIB = 2**20


def write_plots(
    out_dir: Path, results: Sequence[ConfigResult], report: Mapping
) -> tuple[Path, ...]:
    """Writes the five plots into `out_dir` (which must exist) and returns their paths.
    `report` is the `build_report` document for `results` (ratios and fairness notes)."""
    figures = {
        TTFT_CDF_FILE: latency_cdf_figure(results, "ttft_ms", "time to first token (ms)"),
        TBT_CDF_FILE: latency_cdf_figure(results, "tbt_ms", "time between tokens (ms)"),
        SWITCH_COST_FILE: switch_cost_figure(results, report["ratios"]),
        TENANT_SERVICE_FILE: tenant_service_figure(
            results, report["configs"], window_s=report["fairness_window_s"]
        ),
        SWAP_BANDWIDTH_FILE: swap_bandwidth_figure(results),
    }
    return tuple(_save(figure, out_dir / name) for name, figure in figures.items())


def latency_cdf_figure(results: Sequence[ConfigResult], field: str, x_label: str) -> Figure:
    """Left: the whole CDF on a log time axis. Right: the tail, the fraction of samples at or
    above each time on log-log axes, where p95, p99 and p99.9 are evenly spaced lines; a
    curve ends at 1/n, so a percentile below its end has too few samples behind it."""
    figure = Figure(figsize=(11.0, 4.2))
    cdf_axes, tail_axes = figure.subplots(1, 2)
    smallest_fraction = 1 - DEFAULT_PERCENTILES[-1] / 100
    for result in results:
        values_ms = np.asarray(getattr(result, field), dtype=float)
        # A log axis cannot show 0 ms gaps (tokens delivered in one message); leave them out.
        curve = cdf(values_ms[values_ms > 0])
        num_samples = curve.values.size
        if not num_samples:
            continue
        label = f"{result.name} (n={num_samples:,})"
        cdf_axes.step(curve.values, curve.fractions, where="post", label=label)
        at_or_above = (num_samples - np.arange(num_samples)) / num_samples
        tail_axes.step(curve.values, at_or_above, where="post", label=label)
        smallest_fraction = min(smallest_fraction, 1 / num_samples)
    for axes in (cdf_axes, tail_axes):
        axes.set_xlabel(x_label)
        axes.grid(True, which="both", alpha=0.3)
        if axes.lines:
            axes.set_xscale("log")
            axes.legend(loc="lower right" if axes is cdf_axes else "lower left")
        else:
            axes.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes.transAxes)
    cdf_axes.set_ylabel("fraction of samples")
    cdf_axes.set_ylim(0, 1.01)
    cdf_axes.set_title("CDF", fontsize="medium")
    tail_axes.set_yscale("log")
    tail_axes.set_ylim(smallest_fraction / 2, 1.05)
    tail_axes.set_ylabel("fraction of samples at or above")
    tail_axes.set_title(
        "tail: percentiles read off the dotted lines;\na curve stops at 1/n, so lines below it"
        " are not measured",
        fontsize="medium",
    )
    for q in DEFAULT_PERCENTILES[1:]:
        tail_axes.axhline(1 - q / 100, color="grey", linewidth=0.6, linestyle=":")
        tail_axes.text(
            1.0,
            1 - q / 100,
            f" {percentile_key(q)}",
            transform=tail_axes.get_yaxis_transform(),
            va="center",
            fontsize="small",
            color="grey",
        )
    figure.tight_layout()
    return figure


def switch_cost_figure(results: Sequence[ConfigResult], ratios: Mapping) -> Figure:
    """What a context switch costs each configuration: copy calls issued, time the engine
    stalled on copies, and bytes swapped (out and in, stacked). Titles give the
    baseline / fastswitch ratio from the report's `ratios`."""
    figure = Figure(figsize=(11.0, 4.0))
    copies_axes, stall_axes, bytes_axes = figure.subplots(1, 3)
    names = [r.name for r in results]
    positions = np.arange(len(results))
    colors = [f"C{i}" for i in range(len(results))]
    panels = (
        (copies_axes, [r.swap.num_copies for r in results], "copy calls", "num_copies"),
        (
            stall_axes,
            [r.swap.stall_ms / 1e3 for r in results],
            "engine stall on copies (s)",
            "stall_ms",
        ),
    )
    for axes, values, title, ratio_key in panels:
        bars = axes.bar(positions, values, color=colors)
        axes.bar_label(bars, labels=[_short(v) for v in values], fontsize="small")
        _finish_bar_panel(axes, positions, names, title, ratios.get(ratio_key))
    out_mib = np.array([r.swap.swap_out_bytes for r in results]) / MIB
    in_mib = np.array([r.swap.swap_in_bytes for r in results]) / MIB
    bytes_axes.bar(positions, out_mib, color=colors, label="out")
    bars = bytes_axes.bar(
        positions, in_mib, bottom=out_mib, color=colors, hatch="//", alpha=0.6, label="in (hatched)"
    )
    bytes_axes.bar_label(bars, labels=[_short(v) for v in out_mib + in_mib], fontsize="small")
    bytes_axes.legend(loc="upper right", fontsize="small")
    _finish_bar_panel(bytes_axes, positions, names, "swap traffic (MiB)", ratios.get("swap_bytes"))
    figure.tight_layout()
    return figure


def tenant_service_figure(
    results: Sequence[ConfigResult], configs: Mapping[str, Mapping], *, window_s: float | None
) -> Figure:
    """Cumulative weight-normalised service per tenant, one panel per configuration. Each
    title names the policy and carries the report's fairness note (whether this is fairness or
    only service, and how long tenants were backlogged together); shaded spans are where
    >= 2 tenants were backlogged and served, the only time fairness is owed."""
    figure = Figure(figsize=(8.0, 3.4 * len(results)))
    all_axes = figure.subplots(len(results), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for axes, result in zip(all_axes, results, strict=True):
        contended = backlogged_fairness(
            result.service_events, result.backlog, result.tenant_weights, window_s=window_s
        ).intervals
        for start_s, end_s in _joined_spans([(i.start_s, i.end_s) for i in contended]):
            axes.axvspan(start_s, end_s, color="grey", alpha=0.15, linewidth=0)
        events_by_tenant = defaultdict(list)
        for event in sorted(result.service_events, key=lambda e: e.time_s):
            events_by_tenant[event.tenant].append(event)
        for tenant in sorted(events_by_tenant):
            events = events_by_tenant[tenant]
            times_s = [e.time_s for e in events]
            weighted = np.cumsum([e.num_tokens for e in events]) / result.tenant_weights[tenant]
            axes.step(times_s, weighted, where="post", label=tenant)
        if events_by_tenant:
            axes.legend(loc="upper left", fontsize="small")
        else:
            axes.text(0.5, 0.5, "no service", ha="center", va="center", transform=axes.transAxes)
        note = configs[result.name]["fairness"]["note"]
        axes.set_title(textwrap.fill(f"{result.name}: {note}", 95), fontsize="small", loc="left")
        axes.set_ylabel("tokens / weight")
        axes.grid(True, alpha=0.3)
    all_axes[-1].set_xlabel("time since start (s); shaded: >= 2 tenants backlogged and served")
    figure.tight_layout()
    return figure


def swap_bandwidth_figure(results: Sequence[ConfigResult]) -> Figure:
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    positions = np.arange(len(results))
    medians = []
    for position, result in zip(positions, results, strict=True):
        samples = np.asarray(result.swap.bandwidth_gb_per_s, dtype=float)
        medians.append(float(np.median(samples)) if samples.size else 0.0)
        if samples.size:
            # Spread the swaps evenly across the bar so individual ones stay visible.
            offsets = np.linspace(-0.3, 0.3, samples.size) if samples.size > 1 else np.zeros(1)
            axes.scatter(position + offsets, samples, s=8, color="black", alpha=0.5, zorder=3)
        else:
            axes.text(position, 0, "no swaps", ha="center", va="bottom")
    axes.bar(positions, medians, width=0.7, alpha=0.6, label="median")
    axes.set_xticks(positions, [r.name for r in results])
    axes.set_ylabel("achieved swap bandwidth (GB/s)")
    axes.set_title("bars: median; dots: individual swaps", fontsize="small")
    axes.grid(True, axis="y", alpha=0.3)
    return figure


def _finish_bar_panel(
    axes, positions, names: Sequence[str], title: str, ratio: float | None
) -> None:
    axes.set_xticks(positions, names)
    ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
    axes.set_title(f"{title}\nbaseline / fastswitch: {ratio_text}", fontsize="medium")
    axes.margins(y=0.15)  # room for the value labels
    axes.grid(True, axis="y", alpha=0.3)


def _short(value: float) -> str:
    """A bar label: 1,234,567 -> "1.23M"; small values keep three significant digits."""
    for divisor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= divisor:
            return f"{value / divisor:.3g}{suffix}"
    return f"{value:.3g}"


def _joined_spans(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted spans with touching or overlapping neighbours joined, so a plot shades few."""
    joined: list[tuple[float, float]] = []
    for start_s, end_s in sorted(spans):
        if joined and start_s <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], end_s))
        else:
            joined.append((start_s, end_s))
    return joined


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path
