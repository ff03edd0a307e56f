"""`fastswitch bench`: one multi-tenant, multi-turn workload replayed against the vLLM-style
baseline and against FastSwitch, each on its own local stack (or on given schedulers), then
one report: tail latency, throughput, context switches, fairness and where requests' time
went, side by side. `--scenario` picks the scale (fastswitch_bench.scenarios): quick (the CPU
demo), full, or paper (the FastSwitch paper's end-to-end evaluation)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from fastswitch import settings
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig, SwitchMode

# Imported in `run`, not here, so that `fastswitch bench --help` stays fast: torch, matplotlib
# (the report's plots), numpy (the workload) and the stack.

# The scenarios' names, here so that `--help` imports no benchmark code.
SCENARIOS = ("quick", "full", "paper")
# (name, weight, share of the load)
TENANTS = (("alpha", 1.0, 0.5), ("beta", 1.0, 0.3), ("gamma", 2.0, 0.2))
MODES = (SwitchMode.BASELINE, SwitchMode.FASTSWITCH)
COMPUTE_THREADS = max(1, (os.cpu_count() or 1) - 1)
# The scheduler settings a run takes: the declaration's defaults but the policy's, which is
# trace here because this benchmark reproduces the FastSwitch paper's evaluation (its
# priority-change patterns; --policy vtc for the realistic fair mode).
SCHEDULER_SETTINGS = ("policy", "tick_ms", "trace_pattern", "trace_update_probability")
SCHEDULER_DEFAULTS = {"policy": "trace"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", choices=SCENARIOS, default=None, help=(
        "quick: the CPU demo (< 3 min on 2 cores); full: its longer version (the default); "
        "paper: the FastSwitch paper's evaluation - on CUDA the llama3-8b shape (dummy bf16 "
        "weights) with 4 GiB of KV, on CPU a scaled model (~8 min on 2 cores); the report "
        "maps it onto the paper"))
    parser.add_argument("--quick", action="store_true", help="the same as --scenario quick")
    parser.add_argument("--out", default="bench-report", help="report directory")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the workers compute (auto: cuda when there is one)")
    parser.add_argument("--model", default=None,
                        help="preset or checkpoint (default: the scenario's)")
    parser.add_argument("--sharegpt", default="", help="ShareGPT JSON file to replay instead of synthetic")
    parser.add_argument("--num-conversations", type=int, default=None,
                        help="conversations to replay (default: the scenario's)")
    parser.add_argument("--rate", type=float, default=None,
                        help="conversation arrivals per second (default: the scenario's)")
    parser.add_argument("--kv-cache-bytes", type=int, default=None,
                        help="KV cache of each worker (default: the scenario's)")
    parser.add_argument("--host-kv-bytes", type=int, default=None,
                        help="host KV pool of each worker (default: the scenario's)")
    parser.add_argument("--deadline-s", type=float, default=None, help=(
        "no turn is sent after this many seconds of a configuration's replay (default: the "
        "scenario's; none for quick, full and the CPU paper scenario)"))
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the workload, the priority changes and the engines")
    parser.add_argument("--addr", action="append", default=[], metavar="MODE=HOST:PORT",
                        help="use running schedulers instead of local stacks "
                             "(give baseline=... and fastswitch=...)")
    settings.add_arguments(parser, SchedulerConfig, only=SCHEDULER_SETTINGS,
                           defaults=SCHEDULER_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    try:
        scheduler = settings.from_args(SchedulerConfig, args)
    except ValueError as exc:
        print(f"fastswitch bench: {exc}", file=sys.stderr)
        return 2
    targets = dict(a.split("=", 1) for a in args.addr)
    if targets and set(targets) != {m.value for m in MODES}:
        print("--addr needs baseline=HOST:PORT and fastswitch=HOST:PORT", file=sys.stderr)
        return 2
    import torch

    from fastswitch import logs
    from fastswitch_bench.machine import machine_description
    from fastswitch_bench.report import summary_table, write_report
    from fastswitch_bench.scenarios import (
        scenario_for,
        scenario_mapping,
        with_overrides,
    )
    from fastswitch_bench.workload import TenantSpec, WorkloadError
    from fastswitch_worker.engine.loader import read_model_config
    from fastswitch_worker.engine.presets import PRESETS

    logs.configure("warning", service="bench")
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    name = "quick" if args.quick else (args.scenario or "full")
    scenario = with_overrides(
        scenario_for(name, is_cuda=device == "cuda"), model=args.model,
        num_conversations=args.num_conversations, arrival_rate_per_s=args.rate,
        kv_cache_bytes=args.kv_cache_bytes, host_kv_bytes=args.host_kv_bytes,
        replay_deadline_s=args.deadline_s)
    model = scenario.model
    vocab_size = (PRESETS[model] if model in PRESETS else read_model_config(model)).vocab_size
    tenants = [TenantSpec(*tenant) for tenant in TENANTS]
    try:
        workload = _workload(args, scenario, tenants)
    except WorkloadError as exc:
        print(f"fastswitch bench: {exc}", file=sys.stderr)
        return 2
    scheduler = replace(scheduler, trace_seed=args.seed)
    results = []
    for mode in MODES:
        print(f"== {mode.value}: {len(workload.conversations)} conversations, scenario "
              f"{scenario.name} on {device}", flush=True)
        results.append(asyncio.run(_run_config(args, scenario, device, scheduler, vocab_size,
                                               workload, tenants, mode, targets.get(mode.value))))
    mapping = scenario_mapping(scenario, device=device, tick_ms=scheduler.tick_ms,
                               update_probability=scheduler.trace_update_probability,
                               pattern=scheduler.trace_pattern)
    files = write_report(args.out, results, command=shlex.join(["fastswitch", *sys.argv[1:]]),
                         machine=machine_description(), workload=workload.summary(),
                         scenario=mapping)
    print(summary_table(results))
    print(f"\nreport: {files.markdown_path}  (json: {files.json_path}; plots: "
          f"{', '.join(p.name for p in files.plot_paths)})")
    return 0


def _workload(args: argparse.Namespace, scenario, tenants: list):
    from fastswitch_bench.sharegpt import load_sharegpt
    from fastswitch_bench.workload import synthesize

    if args.sharegpt:
        return load_sharegpt(args.sharegpt, tenants=tenants,
                             arrival_rate_per_s=scenario.arrival_rate_per_s, seed=args.seed,
                             max_conversations=scenario.num_conversations,
                             mean_think_time_s=scenario.mean_think_time_s,
                             max_context_tokens=scenario.max_context_tokens)
    return synthesize(num_conversations=scenario.num_conversations,
                      arrival_rate_per_s=scenario.arrival_rate_per_s, tenants=tenants,
                      seed=args.seed, length_scale=scenario.length_scale,
                      mean_think_time_s=scenario.mean_think_time_s,
                      max_context_tokens=scenario.max_context_tokens)


async def _run_config(args: argparse.Namespace, scenario, device: str,
                      scheduler: SchedulerConfig, vocab_size: int, workload, tenants: list,
                      mode: SwitchMode, address: str | None):
    from fastswitch_bench.replay import tenant_token
    from fastswitch_stack.process_stack import process_stack

    # Both configurations compute with the same threads; FastSwitch's copy threads get the
    # core(s) left over, the baseline copies on its compute thread.
    engine = EngineConfig(model=scenario.model, mode=mode, block_size=16, device=device,
                          dtype=scenario.dtype, kv_cache_bytes=scenario.kv_cache_bytes,
                          host_kv_bytes=scenario.host_kv_bytes,
                          max_num_batched_tokens=scenario.max_num_batched_tokens,
                          seed=args.seed, num_compute_threads=COMPUTE_THREADS)
    run_settings = {"mode": mode.value, "model": scenario.model, "device": device,
                    "dtype": scenario.dtype,
                    "block_size": engine.block_size_for_mode, "compute_threads": COMPUTE_THREADS,
                    "policy": scheduler.policy, "kv_cache_bytes": engine.kv_cache_bytes,
                    "host_kv_bytes": engine.host_kv_bytes,
                    "max_num_batched_tokens": engine.max_num_batched_tokens,
                    "tick_ms": scheduler.tick_ms, "trace_pattern": scheduler.trace_pattern,
                    "trace_update_probability_per_iteration": scheduler.trace_update_probability}
    if address is not None:
        return await _measure(address, workload, tenants, vocab_size, args.seed, mode.value,
                              run_settings, scenario.replay_deadline_s)
    tenants_file = {"tokens": {tenant_token(t.name): t.name for t in tenants},
                    "weights": {t.name: t.weight for t in tenants}, "admins": [tenants[0].name]}
    log_dir = Path(args.out) / "logs" / mode.value
    with process_stack(engine=engine, scheduler=scheduler, log_dir=log_dir, tenants=tenants_file,
                       redis_url=os.environ.get("REDIS_URL"), log_level="warning") as stack:
        return await _measure(stack.address, workload, tenants, vocab_size, args.seed,
                              mode.value, run_settings, scenario.replay_deadline_s)


async def _measure(address: str, workload, tenants: list, vocab_size: int, seed: int, name: str,
                   run_settings: dict, deadline_s: float | None):
    from tqdm import tqdm

    from fastswitch_bench.collect import SwapPoller, config_result
    from fastswitch_bench.replay import replay
    from fastswitch_bench.scenarios import DRAIN_GRACE_S

    poller = SwapPoller(address, tenants[0].name)
    stop = asyncio.Event()
    polling = asyncio.create_task(poller.run(stop))
    total_turns = sum(len(c.turns) for c in workload.conversations)
    with tqdm(total=total_turns, desc=name, unit="turn", file=sys.stderr) as progress:
        log = await replay(workload, address, vocab_size=vocab_size, seed=seed,
                           on_turn_done=lambda: progress.update(1), deadline_s=deadline_s,
                           drain_grace_s=DRAIN_GRACE_S)
    stop.set()
    await polling
    return config_result(name, log, weights={t.name: t.weight for t in tenants},
                         swaps=poller.latest, bandwidth=poller.bandwidth_gb_per_s(),
                         settings=run_settings)
