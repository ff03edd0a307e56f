"""Fairness without churn: backlogged tenants of unequal demand and weights on the tiny model
with tight KV, vtc and fcfs side by side in both worker modes; then two workers with a sticky
(multi-turn) tenant, and a newcomer. Prints tables, writes JSON.

    python benchmarks/fairness.py --out benchmarks/results/fairness_cpu.json
    python benchmarks/fairness.py --simulate --duration-s 20     # simulated workers, faster

Scenarios (each its own stack of real processes: kvstore, workers, scheduler, frontend):
- fairness: A (weight 1, 8 closed-loop streams), B (1, 2), C (2, 2) on one worker with KV for
  --kv-tokens tokens. Per policy x mode: Jain's index of weighted service per --window-s
  window (after --warmup-s), the largest counter gap between backlogged tenants against the
  bound the scheduler states (policy_vtc.py), shares (C/B should be 2), TTFT/TBT p50/p99,
  swap-outs per second and per finished request.
- sticky: two workers; tenant S runs multi-turn conversations (each turn goes to the worker
  holding its KV when that one has room), tenant A backlogs single requests. Reports the
  fraction of samples where a worker ran nothing while requests queued, per-worker load.
- newcomer: A and B backlogged, N (weight 1, 3 streams) arrives a third into the run: seconds
  until N's share over a trailing 1 s window reaches 90% of its fair share.
Samples: the scheduler's ListTenants and GetClusterStats (admin) every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import _fairness_figures as fig
from _common import finish_record, print_table, run_record, write_json
from _fairness_load import TenantLoad, drive

from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.policy_vtc import fairness_bound
from fastswitch_stack.process_stack import process_stack
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.presets import PRESETS
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig
from fastswitch_worker.service.config import WorkerConfig

ADMIN_TOKEN = "tok-admin"
LOADS = {
    "fairness": [TenantLoad("A", "tok-A", 1.0, 8), TenantLoad("B", "tok-B", 1.0, 2),
                 TenantLoad("C", "tok-C", 2.0, 2)],
    "sticky": [TenantLoad("S", "tok-S", 1.0, 4, is_conversation=True),
               TenantLoad("A", "tok-A", 1.0, 8)],
    "newcomer": [TenantLoad("A", "tok-A", 1.0, 8), TenantLoad("B", "tok-B", 1.0, 2),
                 TenantLoad("N", "tok-N", 1.0, 3)],  # start_s set from the duration
}


def tenants_file() -> dict:
    loads = {load.name: load for scenario in LOADS.values() for load in scenario}
    return {"tokens": {load.token: name for name, load in loads.items()} | {ADMIN_TOKEN: "ops"},
            "weights": {name: load.weight for name, load in loads.items()}, "admins": ["ops"]}


def kv_bytes_per_token(model: str) -> int:
    config = PRESETS[model]
    return 2 * config.num_layers * config.num_kv_heads * config.head_dim * config.torch_dtype.itemsize


def stack_configs(args: argparse.Namespace, *, policy: str, mode: str) -> tuple[EngineConfig, WorkerConfig, SchedulerConfig]:
    engine = EngineConfig(model=args.model, mode=mode, block_size=16,
                          kv_cache_bytes=args.kv_tokens * kv_bytes_per_token(args.model),
                          num_compute_threads=args.compute_threads)
    worker = WorkerConfig(engine=engine, simulate=args.simulate, simulation=SimulatedEngineConfig(
        simulated_kv_tokens=args.kv_tokens, simulated_step_ms=args.simulated_step_ms))
    scheduler = SchedulerConfig(policy=policy, tick_ms=args.tick_ms,
                                vtc_preempt_threshold=args.threshold,
                                vtc_quantum=min(args.threshold, SchedulerConfig().vtc_quantum))
    return engine, worker, scheduler


def run_scenario(args: argparse.Namespace, name: str, *, policy: str, mode: str,
                 num_workers: int, log_root: Path) -> dict:
    engine, worker, scheduler = stack_configs(args, policy=policy, mode=mode)
    loads = LOADS[name]
    if name == "newcomer":
        loads = [*loads[:2], replace(loads[2], start_s=args.duration_s / 3)]
    settings = {"prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens}
    log_dir = log_root / f"{name}-{policy}-{mode}"
    with process_stack(engine=engine, scheduler=scheduler, log_dir=log_dir, num_workers=num_workers,
                       http_port=0, tenants=tenants_file(), log_level="warning", worker=worker) as stack:
        observed, samples, start_s = asyncio.run(drive(stack.address, loads, settings,
                                                        args.duration_s, ADMIN_TOKEN))
    names = [load.name for load in loads]
    weights = dict(input_weight=scheduler.vtc_input_weight, output_weight=scheduler.vtc_output_weight)
    measured_s, end_s = start_s + args.warmup_s, start_s + args.duration_s
    switch = fig.switches(samples, start_s=measured_s, end_s=end_s)
    num_finished = sum(observed.num_finished.values())
    result = {
        "scenario": name, "policy": policy, "mode": mode, "num_workers": num_workers,
        "num_samples": len(samples), "num_finished": observed.num_finished, "errors": observed.errors,
        "window_jain": fig.window_jain(samples, names, start_s=measured_s, end_s=end_s,
                                       window_s=args.window_s, **weights),
        "shares": fig.shares(samples, names, start_s=measured_s, end_s=end_s, **weights),
        "max_backlogged_gap": fig.max_backlogged_gap(samples, names, start_s=measured_s),
        "bound": fairness_bound(
            threshold=scheduler.vtc_preempt_threshold, finish_guard_tokens=scheduler.vtc_finish_guard_tokens,
            max_running=scheduler.max_running_per_worker, min_weight=min(load.weight for load in loads),
            max_prompt_tokens=600 if name == "sticky" else args.prompt_tokens,
            max_output_tokens=args.max_tokens, **weights),
        "ttft_ms": fig.tails(observed.ttft_ms), "tbt_ms": fig.tails(observed.tbt_ms),
        "tbt_ms_by_tenant": {n: fig.tails(v) for n, v in observed.tbt_ms_by_tenant.items()},
        **switch,
        "swap_outs_per_request": switch["num_swap_outs"] / max(1, num_finished),
        **fig.idle_while_queued(samples, start_s=measured_s),
    }
    if name == "newcomer":
        result["newcomer_s_to_90pct"] = fig.time_to_share(
            samples, "N", names, arrival_s=start_s + loads[2].start_s, window_s=1.0, **weights)
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=30.0, help="each run's length")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="not counted in the figures")
    parser.add_argument("--window-s", type=float, default=5.0, help="Jain's index window")
    parser.add_argument("--policies", default="vtc,fcfs")
    parser.add_argument("--modes", default="fastswitch,baseline")
    parser.add_argument("--scenarios", default="fairness,sticky,newcomer")
    parser.add_argument("--model", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--kv-tokens", type=int, default=768, help="GPU KV of a worker, in tokens")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threshold", type=float, default=SchedulerConfig().vtc_preempt_threshold,
                        help="vtc's preemption threshold (virtual tokens)")
    parser.add_argument("--tick-ms", type=float, default=SchedulerConfig().tick_ms)
    parser.add_argument("--compute-threads", type=int, default=1, help="the same in both modes")
    parser.add_argument("--simulate", action="store_true", help="simulated workers (no model)")
    parser.add_argument("--simulated-step-ms", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    record = run_record(num_threads=args.compute_threads, is_quick=args.duration_s < 20)
    results = []
    with tempfile.TemporaryDirectory(prefix="fastswitch-fairness-") as tmp:
        scenarios = args.scenarios.split(",")
        if "fairness" in scenarios:
            for mode in args.modes.split(","):
                for policy in args.policies.split(","):
                    results.append(run_scenario(args, "fairness", policy=policy, mode=mode,
                                                num_workers=1, log_root=Path(tmp)))
        for name, workers in (("sticky", 2), ("newcomer", 1)):
            if name in scenarios:
                results.append(run_scenario(args, name, policy="vtc", mode="fastswitch",
                                            num_workers=workers, log_root=Path(tmp)))
    finish_record(record)
    report(results)
    if args.out is not None:
        write_json(args.out, {"record": record, "settings": vars(args) | {"out": str(args.out)},
                              "runs": results})
    return 0


def report(results: list[dict]) -> None:
    def p(value: dict | None, key: str) -> float:
        return value[key] if value else float("nan")

    rows = []
    for r in results:
        jain = r["window_jain"]
        rows.append([r["scenario"], r["policy"], r["mode"], min(jain) if jain else float("nan"),
                     r["max_backlogged_gap"], r["bound"],
                     " ".join(f"{n}={s:.2f}" for n, s in r["shares"].items()),
                     p(r["ttft_ms"], "p50"), p(r["ttft_ms"], "p99"), p(r["tbt_ms"], "p50"),
                     p(r["tbt_ms"], "p99"), r["swap_outs_per_s"], r["swap_outs_per_request"]])
    print_table(["scenario", "policy", "mode", "jain min", "gap", "bound", "shares", "ttft p50",
                 "ttft p99", "tbt p50", "tbt p99", "swaps/s", "swaps/req"], rows)
    for r in results:
        if r["scenario"] == "sticky":
            print(f"sticky: a worker idle while requests queued in "
                  f"{r['idle_while_queued_fraction']:.1%} of samples; mean running per worker "
                  f"{ {k: round(v, 2) for k, v in r['mean_running'].items()} }")
        if r["scenario"] == "newcomer":
            print(f"newcomer: 90% of its fair share after {r['newcomer_s_to_90pct']} s")
        if r["errors"]:
            print(f"{r['scenario']}/{r['policy']}/{r['mode']} stream errors: {r['errors']}")


if __name__ == "__main__":
    sys.exit(main())
