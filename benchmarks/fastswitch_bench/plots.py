"""PNG plots of the report. Uses matplotlib's object API with the Agg canvas directly, so it
never touches pyplot's global backend and works headless."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fastswitch_bench.results import ConfigResult
from fastswitch_bench.stats import cdf

TTFT_CDF_FILE = "ttft_cdf.png"
TBT_CDF_FILE = "tbt_cdf.png"
TENANT_SERVICE_FILE = "tenant_service.png"
SWAP_BANDWIDTH_FILE = "swap_bandwidth.png"
_DPI = 110


def write_plots(out_dir: Path, results: Sequence[ConfigResult]) -> tuple[Path, ...]:
    """Writes the four plots into `out_dir` (which must exist) and returns their paths."""
    return (
        _latency_cdf(out_dir / TTFT_CDF_FILE, results, "ttft_ms", "time to first token (ms)"),
        _latency_cdf(out_dir / TBT_CDF_FILE, results, "tbt_ms", "time between tokens (ms)"),
        _tenant_service(out_dir / TENANT_SERVICE_FILE, results),
        _swap_bandwidth(out_dir / SWAP_BANDWIDTH_FILE, results),
    )


def _latency_cdf(path: Path, results: Sequence[ConfigResult], field: str, x_label: str) -> Path:
    figure = Figure(figsize=(6.4, 4.0))
    axes = figure.add_subplot()
    has_samples = False
    for result in results:
        values_ms = np.asarray(getattr(result, field), dtype=float)
        # A log axis cannot show 0 ms gaps (tokens delivered in one message); leave them out.
        curve = cdf(values_ms[values_ms > 0])
        if curve.values.size:
            axes.step(curve.values, curve.fractions, where="post", label=result.name)
            has_samples = True
    if has_samples:
        axes.set_xscale("log")
        axes.legend(loc="lower right")
    else:
        axes.text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes.transAxes)
    axes.axhline(0.99, color="grey", linewidth=0.5, linestyle=":")  # where p99 reads off
    axes.set_xlabel(x_label)
    axes.set_ylabel("fraction of samples")
    axes.set_ylim(0, 1.01)
    axes.grid(True, which="both", alpha=0.3)
    return _save(figure, path)


def _tenant_service(path: Path, results: Sequence[ConfigResult]) -> Path:
    figure = Figure(figsize=(6.4, 2.6 * len(results)))
    all_axes = figure.subplots(len(results), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    for axes, result in zip(all_axes, results, strict=True):
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
        axes.set_title(result.name, fontsize="medium")
        axes.set_ylabel("tokens / weight")
        axes.grid(True, alpha=0.3)
    all_axes[-1].set_xlabel("time since start (s)")
    figure.tight_layout()
    return _save(figure, path)


def _swap_bandwidth(path: Path, results: Sequence[ConfigResult]) -> Path:
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
    return _save(figure, path)


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=_DPI)
    return path
