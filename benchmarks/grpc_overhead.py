"""Per-token overhead of the gRPC path (client -> frontend -> worker -> back; the scheduler
places and admits but carries no token) against
calling the engine in-process, on the same model and batch. Prints a table, writes JSON.

    python benchmarks/grpc_overhead.py --out benchmarks/results/grpc_overhead_cpu.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_bench.machine import machine_description
from fastswitch_bench.stats import percentiles
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import process_stack
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import StopConditions


def prompts(num_requests: int) -> list[list[int]]:
    return [[(i * 31 + k * 7) % 250 + 1 for k in range(32)] for i in range(num_requests)]


def gaps_ms(times: list[float]) -> list[float]:
    return [(b - a) * 1e3 for a, b in zip(times, times[1:], strict=False)]


def in_process(engine_config: EngineConfig, num_requests: int, max_tokens: int) -> list[float]:
    engine = Engine(engine_config)
    times: dict[str, list[float]] = {}
    for index, prompt in enumerate(prompts(num_requests)):
        engine.add_request(f"r{index}", prompt, stop=StopConditions(max_tokens=max_tokens, ignore_eos=True))
    while engine.has_unfinished_requests():
        result = engine.step()
        now = time.perf_counter()
        for output in result.outputs:
            times.setdefault(output.request_id, []).extend([now] * len(output.new_token_ids))
    engine.close()
    return [gap for t in times.values() for gap in gaps_ms(t)]


async def over_grpc(engine_config: EngineConfig, num_requests: int, max_tokens: int,
                    log_dir: Path) -> list[float]:
    """The same requests through frontend, scheduler and worker processes, timed at the
    client."""
    # Shorter than the default tick: what is measured is the token path, not how long a new
    # request waits to be admitted.
    scheduler = SchedulerConfig(tick_ms=5)
    with process_stack(engine=engine_config, scheduler=scheduler, log_dir=log_dir,
                       log_level="warning") as stack:
        async with grpc.aio.insecure_channel(stack.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)

            async def one(prompt: list[int]) -> list[float]:
                times = []
                request = scheduler_pb2.GenerateRequest(
                    token_ids=scheduler_pb2.TokenIds(ids=prompt),
                    stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))
                async for response in stub.Generate(request):
                    times.extend([time.perf_counter()] * len(response.token_ids))
                return gaps_ms(times)

            results = await asyncio.gather(*(one(p) for p in prompts(num_requests)))
    return [gap for r in results for gap in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--num-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--compute-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/grpc_overhead_cpu.json"))
    args = parser.parse_args()
    engine_config = EngineConfig(model=args.model, kv_cache_bytes=64 << 20, host_kv_bytes=64 << 20,
                                 num_compute_threads=args.compute_threads)
    local = percentiles(in_process(engine_config, args.num_requests, args.max_tokens))
    with tempfile.TemporaryDirectory() as log_dir:
        remote = percentiles(asyncio.run(over_grpc(engine_config, args.num_requests,
                                                   args.max_tokens, Path(log_dir))))
    print(f"TBT with {args.num_requests} concurrent requests, model {args.model}, "
          f"{args.compute_threads} compute thread(s); gRPC path: frontend, scheduler and worker processes")
    print(f"{'':12} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in (("in-process", local), ("gRPC", remote)):
        print(f"{name:12} {figures['p50']:8.2f} {figures['p99']:8.2f}")
    overhead = {q: remote[q] - local[q] for q in ("p50", "p99")}
    print(f"{'overhead':12} {overhead['p50']:8.2f} {overhead['p99']:8.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "grpc_overhead", "model": args.model, "num_requests": args.num_requests,
        "max_tokens": args.max_tokens, "compute_threads": args.compute_threads,
        "grpc_path": "client -> frontend process <- worker process (127.0.0.1); scheduler process: control only", "tbt_ms": {"in_process": local, "grpc": remote},
        "overhead_ms": overhead, "load_avg": os.getloadavg(),
        "machine": machine_description()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
