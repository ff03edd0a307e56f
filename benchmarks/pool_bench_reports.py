"""Pools several `fastswitch bench` reports of one workload: percentiles over every run's
turns, baseline / FastSwitch ratios with bootstrap intervals, and each run's own ratios.

One run's tail ratios are draws (see fastswitch_bench/pooling.py); this says what several
runs say together. Reads DIR/report.json of each run; needs reports that record their turns.

    python benchmarks/pool_bench_reports.py benchmarks/results/bench_quick_cpu_run{7,8,9,10} \\
        --out benchmarks/results/bench_quick_cpu_pooled.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from fastswitch_bench.pooling import LATENCY_RATIO_KEYS, PoolingError, pool_reports
from fastswitch_bench.tables import format_interval, format_ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report_dirs", nargs="+", type=Path, help="directories holding report.json")
    parser.add_argument("--out", type=Path, default=None, help="write the pooled figures here (JSON)")
    args = parser.parse_args(argv)
    try:
        reports = [json.loads((d / "report.json").read_text(encoding="utf-8")) for d in args.report_dirs]
        pooled = pool_reports(reports, names=[d.name for d in args.report_dirs])
    except (OSError, json.JSONDecodeError, PoolingError) as exc:
        print(f"pool_bench_reports: {exc}", file=sys.stderr)
        return 2
    print(pooled_table(pooled))
    if args.out is not None:
        script = os.path.relpath(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]
        pooled = {"command": shlex.join(["python", script, *(argv or sys.argv[1:])]), **pooled}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(pooled, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def pooled_table(pooled: dict) -> str:
    """Plain text: per latency percentile, the pooled figures and ratio [interval], then
    each run's ratio."""
    runs = pooled["per_run_ratios"]
    header = ["metric", "baseline (ms)", "fastswitch (ms)", "pooled ratio", *(r["name"] for r in runs)]
    rows = [header]
    for key in LATENCY_RATIO_KEYS:
        metric, percentile = key.split("_", 1)
        sides = [pooled["configs"][c][f"{metric}_ms"] for c in ("baseline", "fastswitch")]
        marks = " (~max)" if percentile in sides[0]["unsupported_percentiles"] else ""
        ratio = format_ratio(pooled["ratios"][key]) + format_interval(pooled["ratio_intervals"][key])
        rows.append([f"{metric.upper()} {percentile} (n={sides[0]['num_samples']:,})",
                     *(f"{s[percentile]:,.1f}" for s in sides), ratio + marks,
                     *(format_ratio(r[key]) for r in runs)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.append(f"runs with every latency ratio >= 1: {pooled['num_runs_every_ratio_at_least_1']} "
                 f"of {len(runs)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
