"""Writes a benchmark's report: DIR/report.json, DIR/report.md and PNG plots.

This is the module `fastswitch bench` calls; the pieces live in `results` (data and the JSON
document), `tables` (markdown and terminal text), `plots` and `machine`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fastswitch_bench.machine import machine_description
from fastswitch_bench.results import (
    DEFAULT_FAIRNESS_WINDOW_S,
    ConfigResult,
    SwapFigures,
    build_report,
)
from fastswitch_bench.tables import render_markdown, summary_table

__all__ = [
    "ConfigResult",
    "ReportFiles",
    "SwapFigures",
    "build_report",
    "machine_description",
    "summary_table",
    "write_report",
]

REPORT_JSON_FILE = "report.json"
REPORT_MARKDOWN_FILE = "report.md"


@dataclass(frozen=True)
class ReportFiles:
    json_path: Path
    markdown_path: Path
    plot_paths: tuple[Path, ...]


def write_report(
    out_dir: str | Path,
    results: Sequence[ConfigResult],
    *,
    command: str,
    machine: Mapping[str, object],
    workload: Mapping[str, object],
    fairness_window_s: float | None = DEFAULT_FAIRNESS_WINDOW_S,
    scenario: Mapping[str, object] | None = None,
) -> ReportFiles:
    """Creates `out_dir` if needed and writes the report into it, replacing earlier files of
    the same names. `results` must include "baseline" and "fastswitch" (see `build_report`);
    `workload` is typically `Workload.summary()`, `machine` `machine_description()`."""
    out_dir = Path(out_dir)
    report = build_report(
        results,
        command=command,
        machine=machine,
        workload=workload,
        fairness_window_s=fairness_window_s,
        scenario=scenario,
    )
    # Serialise first: a figure that is not plain JSON (NaN, a stray object) fails here,
    # before any file is half-written.
    json_text = json.dumps(report, indent=2, allow_nan=False)
    # Imported here: matplotlib costs about a second, which `fastswitch bench --help` and the
    # terminal summary should not pay.
    from fastswitch_bench.plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    plot_paths = write_plots(out_dir, results, report)
    json_path = out_dir / REPORT_JSON_FILE
    json_path.write_text(json_text + "\n", encoding="utf-8")
    markdown_path = out_dir / REPORT_MARKDOWN_FILE
    markdown_path.write_text(
        render_markdown(report, [p.name for p in plot_paths]), encoding="utf-8"
    )
    return ReportFiles(json_path, markdown_path, plot_paths)
