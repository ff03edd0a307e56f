"""Scheduler decision time per tick with many queued requests (issue: services figures).

Builds a real SchedulerCore with one worker link that is marked connected (its commands
are queued, not sent) and N requests from several tenants, then times `tick()` for every
policy. Prints a table and writes JSON.

    python benchmarks/scheduler_tick.py --num-requests 1000 --out benchmarks/results/scheduler_tick_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch.v1 import common_pb2
from fastswitch_bench.machine import machine_description
from fastswitch_scheduler.config import POLICIES, SchedulerConfig
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.requests import ClusterRequest
from fastswitch_scheduler.worker_link import WorkerLink


async def time_ticks(policy: str, num_requests: int, num_ticks: int, num_tenants: int) -> list[float]:
    config = SchedulerConfig(listen="127.0.0.1:0", policy=policy, trace_update_probability=0.04)
    tenants = TenantRegistry.from_file("", input_weight=1.0, output_weight=2.0)
    for index in range(num_tenants):
        tenants.tenants[f"t{index}"] = TenantState(f"t{index}", weight=1.0 + index % 3)
    core = SchedulerCore(config, tenants)
    link = WorkerLink("worker-0:1", config.security, on_ready=lambda _: None, on_event=lambda *_: None, on_lost=lambda _: None)
    link.worker_id, link.is_ready = "worker-0", True
    link.capacity = common_pb2.KVCapacity(block_size=16, num_gpu_blocks=4096)  # 64k tokens
    core.links = {link.address: link}
    names = list(tenants.tenants)
    for index in range(num_requests):
        tenant = tenants.tenants[names[index % len(names)]]
        tenant.virtual_tokens = (index * 7919) % 1000
        core.requests.add(ClusterRequest(
            request_id=f"r{index}", client_request_id=f"c{index}", tenant=tenant,
            frontend_id="frontend-0", num_prompt_tokens=64 + index % 512, max_tokens=128,
            priority=index % 4, worker_id="worker-0"))
    times_ms = []
    for _ in range(num_ticks):
        for tenant in tenants.tenants.values():  # service moves the counters between ticks
            tenant.virtual_tokens += 1.0
        start = time.perf_counter()
        await core.tick()
        times_ms.append((time.perf_counter() - start) * 1e3)
    return times_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-requests", type=int, default=1000)
    parser.add_argument("--num-ticks", type=int, default=200)
    parser.add_argument("--num-tenants", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/scheduler_tick_cpu.json"))
    args = parser.parse_args()
    rows = {}
    for policy in POLICIES:
        times = sorted(asyncio.run(time_ticks(policy, args.num_requests, args.num_ticks, args.num_tenants)))
        rows[policy] = {"mean_ms": statistics.fmean(times), "p50_ms": times[len(times) // 2],
                        "p99_ms": times[int(len(times) * 0.99) - 1], "max_ms": times[-1]}
    print(f"scheduler tick with {args.num_requests} queued requests, {args.num_tenants} tenants, 1 worker")
    print(f"{'policy':10} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for policy, row in rows.items():
        print(f"{policy:10} {row['mean_ms']:9.2f} {row['p50_ms']:9.2f} {row['p99_ms']:9.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "scheduler_tick", "num_requests": args.num_requests,
        "num_ticks": args.num_ticks, "num_tenants": args.num_tenants, "policies": rows,
        "load_avg": os.getloadavg(), "machine": machine_description()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
