"""Human-readable renderings of the report: report.md and the terminal summary (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastswitch_bench.breakdown import breakdown_markdown
from fastswitch_bench.results import (
    BASELINE,
    FASTSWITCH,
    RATIOS_NOTE,
    ConfigResult,
    comparison_intervals,
    compute_ratios,
    config_figures,
)

MIB = 2**20

# (label, path into a config's figures, scale, key in "ratios" or None)
_METRIC_ROWS: tuple[tuple[str, tuple[str, ...], float, str | None], ...] = (
    ("TTFT samples", ("ttft_ms", "num_samples"), 1.0, None),
    ("TTFT p50 (ms)", ("ttft_ms", "p50"), 1.0, "ttft_p50"),
    ("TTFT p95 (ms)", ("ttft_ms", "p95"), 1.0, "ttft_p95"),
    ("TTFT p99 (ms)", ("ttft_ms", "p99"), 1.0, "ttft_p99"),
    ("TTFT p99.9 (ms)", ("ttft_ms", "p99.9"), 1.0, "ttft_p99.9"),
    ("TBT samples", ("tbt_ms", "num_samples"), 1.0, None),
    ("TBT p50 (ms)", ("tbt_ms", "p50"), 1.0, "tbt_p50"),
    ("TBT p95 (ms)", ("tbt_ms", "p95"), 1.0, "tbt_p95"),
    ("TBT p99 (ms)", ("tbt_ms", "p99"), 1.0, "tbt_p99"),
    ("TBT p99.9 (ms)", ("tbt_ms", "p99.9"), 1.0, "tbt_p99.9"),
    ("E2E samples", ("e2e_ms", "num_samples"), 1.0, None),
    ("E2E p99 (ms)", ("e2e_ms", "p99"), 1.0, "e2e_p99"),
    ("throughput (tokens/s)", ("throughput_tokens_per_s",), 1.0, "throughput"),
)
_SWAP_ROWS: tuple[tuple[str, tuple[str, ...], float, str | None], ...] = (
    ("preemptions", ("swap", "num_preemptions"), 1.0, None),
    ("swapped out (MiB)", ("swap", "swap_out_bytes"), 1 / MIB, None),
    ("swapped in (MiB)", ("swap", "swap_in_bytes"), 1 / MIB, None),
    ("swap traffic (MiB)", ("swap", "total_bytes"), 1 / MIB, "swap_bytes"),
    ("copy calls", ("swap", "num_copies"), 1.0, "num_copies"),
    ("stall (ms)", ("swap", "stall_ms"), 1.0, "stall_ms"),
    ("copy time (ms)", ("swap", "copy_ms"), 1.0, None),
    ("bandwidth p50 (GB/s)", ("swap", "bandwidth_gb_per_s", "p50"), 1.0, None),
)
_FAIRNESS_ROWS: tuple[tuple[str, tuple[str, ...], float, str | None], ...] = (
    ("Jain, backlogged mean", ("fairness", "backlogged", "jain_mean"), 1.0, None),
    ("Jain, backlogged min", ("fairness", "backlogged", "jain_min"), 1.0, None),
    ("backlogged intervals", ("fairness", "backlogged", "num_intervals"), 1.0, None),
    ("contended time (s)", ("fairness", "backlogged", "covered_s"), 1.0, None),
    ("Jain, whole run", ("fairness", "jain_whole_run"), 1.0, None),
)

# Appended to a percentile that too few samples stand behind (see UNSUPPORTED_NOTE).
_MAX_MARK = "~max"
UNSUPPORTED_NOTE = (
    f"A percentile marked (n=N: {_MAX_MARK}) rests on fewer samples than it needs for one "
    "sample beyond it ({needs}); it is interpolated between the two largest samples, so it is "
    "the maximum in all but name, and a ratio marked the same compares such maxima."
)

# What the terminal summary shows: headline latencies, switch cost and fairness.
_TERMINAL_ROWS = (
    *_METRIC_ROWS,
    _SWAP_ROWS[0],  # preemptions
    _SWAP_ROWS[3],  # swap traffic
    _SWAP_ROWS[4],  # copy calls
    _SWAP_ROWS[5],  # stall
    _FAIRNESS_ROWS[0],  # Jain, backlogged mean
)


def format_number(value: object) -> str:
    """Short, readable numbers; None (no data) renders as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:#.3g}"


def format_ratio(value: float | None) -> str:
    """A ratio as "2.50x"; None (undefined) renders as a dash."""
    return "-" if value is None else f"{value:.2f}x"


def summary_table(results: Sequence[ConfigResult]) -> str:
    """A fixed-width table of the headline figures, one column per configuration, plus a
    ratio column when both baseline and fastswitch are present (what `make demo` prints),
    with each latency ratio's bootstrap interval when the results carry their turns."""
    configs = {r.name: config_figures(r) for r in results}
    ratios = _ratios_if_comparable(configs)
    rows = _rows(configs, ratios, _TERMINAL_ROWS, comparison_intervals(results) if ratios else None)
    header = ["metric", *configs, *(["ratio"] if ratios else [])]
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _scenario_section(scenario: Mapping) -> list[str]:
    """The scenario and its mapping onto the paper's evaluation, aspect by aspect."""
    lines = [f"## Scenario: {scenario['name']}", "", str(scenario.get("description", "")), "",
             "| aspect | the paper | this run |", "|---|---|---|"]
    paper, here = scenario.get("paper", {}), scenario.get("here", {})
    lines += [f"| {key} | {paper.get(key, '-')} | {here.get(key, '-')} |"
              for key in dict.fromkeys([*paper, *here])]
    return [*lines, ""]


def render_markdown(report: Mapping, plot_file_names: Sequence[str]) -> str:
    """report.md from a `build_report` document and the plots written beside it."""
    configs: Mapping = report["configs"]
    ratios: Mapping = report["ratios"]
    workload: Mapping = report["workload"]
    parts = [
        "# FastSwitch benchmark: " + " vs ".join(configs),
        "",
        f"Command: `{report['command']}`",
        "",
    ]
    if "description" in workload:
        parts += [f"Workload: {workload['description']}", ""]
    turns = turns_statement(workload)
    if turns is not None:
        parts += [turns, ""]
    if "scenario" in report:
        parts += _scenario_section(report["scenario"])
    parts += [
        "## Configurations",
        "",
        *_key_value_table({n: f["settings"] for n, f in configs.items()}),
        "",
    ]
    intervals = report.get("ratio_intervals", {})
    parts += ["## Latency and throughput", "",
              *_markdown_table(configs, ratios, _METRIC_ROWS, intervals), ""]
    if any(
        _unsupported_sample_count(figures, path) is not None
        for figures in configs.values()
        for _, path, _, _ in _METRIC_ROWS
    ):
        needs = ", ".join(
            f"{key}: {count:,}" for key, count in report["min_samples_by_percentile"].items()
        )
        parts += [UNSUPPORTED_NOTE.format(needs=needs), ""]
    parts += [f"Ratios: {RATIOS_NOTE}", ""]
    if intervals:
        parts += [report["ratio_intervals_note"], ""]
    parts += breakdown_markdown(configs)
    parts += ["## Context switches", "", *_markdown_table(configs, ratios, _SWAP_ROWS), ""]
    parts += [
        "## Fairness",
        "",
        "Jain's index of weight-normalised service (tokens / weight) over intervals in which at "
        "least two tenants had work queued or running"
        + (
            f", cut into windows of {report['fairness_window_s']} s"
            if report.get("fairness_window_s")
            else ""
        )
        + "; 1 is perfectly fair, 1/n means one tenant took everything.",
        "",
        *(f"- {name}: {figures['fairness']['note']}" for name, figures in configs.items()),
        "",
        *_markdown_table(configs, ratios, _FAIRNESS_ROWS),
        "",
        *_tenant_table(configs),
        "",
    ]
    parts += ["## Workload", "", *_key_value_table(workload), ""]
    parts += ["## Machine", "", *_key_value_table(report["machine"]), ""]
    if plot_file_names:
        parts += ["## Plots", ""]
        parts += [f"![{name.removesuffix('.png')}]({name})" for name in plot_file_names]
        parts.append("")
    return "\n".join(parts)


def turns_statement(workload: Mapping) -> str | None:
    """The measured turns per conversation, then the configured mean labelled as such and
    what the context fit cut (pure); None when `workload` (a `Workload.summary()`) lacks them."""
    if "mean_turns_per_conversation" not in workload:
        return None
    text = (
        f"Turns per conversation: measured mean {workload['mean_turns_per_conversation']:.2f} "
        f"({workload['num_turns']:,} turns in {workload['num_conversations']:,} conversations)"
    )
    configured = workload.get("configured_mean_turns_per_conversation")
    if configured is not None:
        text += f"; configured mean {configured:g} (the generator's target, not a measurement)"
    if "num_turns_dropped_to_fit_context" in workload:
        context = workload.get("max_context_tokens")
        context_text = f"the {context:,}-token context" if context else "the context"
        text += (
            f". As drawn, before fitting to {context_text}, these "
            f"{workload['num_conversations']:,} conversations averaged "
            f"{workload['mean_turns_before_context_fit']:.2f} turns; the fit dropped "
            f"{workload['num_turns_dropped_to_fit_context']:,} turns"
        )
    return text + "."


def _ratios_if_comparable(configs: Mapping) -> dict[str, float | None]:
    if BASELINE in configs and FASTSWITCH in configs:
        return compute_ratios(configs[BASELINE], configs[FASTSWITCH])
    return {}


def format_interval(interval: Sequence[float] | None) -> str:
    """A ratio's interval as " [0.81-1.40]"; nothing when there is none."""
    return "" if interval is None else f" [{interval[0]:.2f}-{interval[1]:.2f}]"


def _rows(configs: Mapping, ratios: Mapping, specs,
          intervals: Mapping | None = None) -> list[list[str]]:
    rows = []
    for label, path, scale, ratio_key in specs:
        row = [label]
        is_marked = False
        for figures in configs.values():
            value = _lookup(figures, path)
            text = format_number(value * scale if value is not None and scale != 1.0 else value)
            num_samples = _unsupported_sample_count(figures, path)
            if value is not None and num_samples is not None:
                text += f" (n={num_samples:,}: {_MAX_MARK})"
                is_marked = True
            row.append(text)
        if ratios:
            ratio = ratios.get(ratio_key) if ratio_key else None
            ratio_text = format_ratio(ratio) if ratio_key else ""
            if ratio is not None and intervals:
                ratio_text += format_interval(intervals.get(ratio_key))
            row.append(ratio_text + (f" ({_MAX_MARK})" if is_marked and ratio is not None else ""))
        rows.append(row)
    return rows


def _unsupported_sample_count(figures: Mapping, path: tuple[str, ...]) -> int | None:
    """The sample count behind the percentile at `path` when it is too small to support it
    (listed in its figures' `unsupported_percentiles`), else None."""
    parent = _lookup(figures, path[:-1])
    if isinstance(parent, Mapping) and path[-1] in parent.get("unsupported_percentiles", ()):
        return parent["num_samples"]
    return None


def _markdown_table(configs: Mapping, ratios: Mapping, specs,
                    intervals: Mapping | None = None) -> list[str]:
    header = ["metric", *configs, *(["baseline / fastswitch"] if ratios else [])]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(configs, ratios, specs, intervals)]
    return lines


def _tenant_table(configs: Mapping) -> list[str]:
    tenants = sorted({t for figures in configs.values() for t in figures["fairness"]["per_tenant"]})
    header = ["tenant", *(f"{name}: tokens (share)" for name in configs)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for tenant in tenants:
        row = [tenant]
        for figures in configs.values():
            entry = figures["fairness"]["per_tenant"].get(tenant)
            if entry is None:
                row.append("-")
                continue
            share = entry["service_share"]
            share_text = "-" if share is None else f"{share:.1%}"
            row.append(
                f"{entry['served_tokens']:,} ({share_text}), weight {format_number(entry['weight'])}"
            )
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _key_value_table(values: Mapping) -> list[str]:
    lines = ["| key | value |", "|---|---|"]
    for key, value in values.items():
        text = format_number(value) if not isinstance(value, Mapping) else _inline(value)
        lines.append(f"| {key} | {text} |")
    return lines


def _inline(mapping: Mapping) -> str:
    return "; ".join(
        f"{k}: {_inline(v) if isinstance(v, Mapping) else format_number(v)}"
        for k, v in mapping.items()
    )


def _lookup(figures: Mapping, path: tuple[str, ...]):
    value = figures
    for key in path:
        value = value[key]
    return value
