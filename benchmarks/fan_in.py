"""Fan-in: N concurrent Generate streams against one local stack, every stream's final status
counted. What it checks is that overload gets definite answers (completed, or RESOURCE_EXHAUSTED
from the queue caps) and that nothing ends CANCELLED or hangs. Prints a table, writes JSON.

    python benchmarks/fan_in.py --streams 4096 --out benchmarks/results/fan_in_cpu.json

Client channels: gRPC multiplexes every stream of one channel over one HTTP/2 connection, and
a connection carries at most the server's SETTINGS_MAX_CONCURRENT_STREAMS at once; the rest
wait in the client. `--streams-per-channel` spreads the streams over several channels, as many
clients would.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
from pathlib import Path

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_bench.machine import machine_description
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import process_stack
from fastswitch_worker.engine.config import EngineConfig


async def one_stream(stub: scheduler_pb2_grpc.SchedulerStub, index: int, max_tokens: int,
                     deadline_s: float) -> tuple[str, float]:
    request = scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=[(index * 7 + k) % 250 + 1 for k in range(16)]),
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))
    started = time.perf_counter()
    try:
        num_tokens = 0
        async for response in stub.Generate(request, timeout=deadline_s):
            num_tokens += len(response.token_ids)
        code = "OK" if num_tokens == max_tokens else f"OK_SHORT_{num_tokens}"
    except grpc.aio.AioRpcError as exc:
        code = exc.code().name
    return code, time.perf_counter() - started


async def fan_in(address: str, *, num_streams: int, streams_per_channel: int, max_tokens: int,
                 deadline_s: float) -> dict[str, object]:
    channels = [grpc.aio.insecure_channel(address)
                for _ in range(-(-num_streams // streams_per_channel))]
    stubs = [scheduler_pb2_grpc.SchedulerStub(channel) for channel in channels]
    started = time.perf_counter()
    try:
        results = await asyncio.gather(*(
            one_stream(stubs[i // streams_per_channel], i, max_tokens, deadline_s)
            for i in range(num_streams)))
    finally:
        for channel in channels:
            await channel.close()
    codes = collections.Counter(code for code, _ in results)
    slowest_s = max(seconds for _, seconds in results)
    return {"num_streams": num_streams, "streams_per_channel": streams_per_channel,
            "max_tokens": max_tokens, "codes": dict(codes), "slowest_stream_s": round(slowest_s, 2),
            "wall_s": round(time.perf_counter() - started, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4096)
    parser.add_argument("--streams-per-channel", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    defaults = SchedulerConfig()
    parser.add_argument("--max-queued-requests", type=int, default=defaults.max_queued_requests)
    parser.add_argument("--max-queued-per-tenant", type=int, default=defaults.max_queued_per_tenant)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    engine = EngineConfig(model="tiny", block_size=16, kv_cache_bytes=16 << 20, host_kv_bytes=64 << 20,
                          max_num_seqs=64)
    scheduler = SchedulerConfig(max_queued_requests=args.max_queued_requests,
                                max_queued_per_tenant=args.max_queued_per_tenant)
    with tempfile.TemporaryDirectory(prefix="fastswitch-fan-in-") as tmp, process_stack(
            engine=engine, scheduler=scheduler, log_dir=Path(tmp), num_workers=args.workers,
            log_level="warning") as stack:
        result = asyncio.run(fan_in(stack.address, num_streams=args.streams,
                                    streams_per_channel=args.streams_per_channel,
                                    max_tokens=args.max_tokens, deadline_s=args.deadline_s))
        scheduler_log = (Path(tmp) / "scheduler.log").read_text().splitlines()
    result["machine"] = machine_description()
    result["settings"] = {"workers": args.workers, "max_queued_requests": args.max_queued_requests,
                          "max_queued_per_tenant": args.max_queued_per_tenant}
    result["scheduler_log_warnings"] = sum('"level": "warning"' in line or '"level": "error"' in line
                                           for line in scheduler_log)
    print(f"{'status':<24}{'streams':>10}")
    for code, count in sorted(result["codes"].items()):
        print(f"{code:<24}{count:>10}")
    print(f"slowest stream {result['slowest_stream_s']} s, wall {result['wall_s']} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
