"""What the OpenAI-compatible HTTP API (server-sent events) costs per token against the gRPC
API, on the same stack in one run: closed-loop streams (each client sends its next request when
the previous one ended) over gRPC Generate and over HTTP /v1/completions with `stream: true`,
phases alternated so drift hits both alike. TBT (gaps between a stream's tokens) and TTFT
(request sent -> first token) at the client, p50/p99 for both, and their ratio. Prints a table,
writes JSON. Target: HTTP adds at most 5% to TBT p50.

    python benchmarks/http_overhead.py --out benchmarks/results/http_overhead_cpu.json

The HTTP client reads raw SSE lines (aiohttp), as the gRPC client reads raw messages: what is
measured is the servers' path, not a client library's parsing. The tiny model answers one
printable character per token, so every SSE chunk is one token.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc
from _common import (
    RESULTS_DIR,
    finish_record,
    print_table,
    run_record,
    summarize_ms,
    synthetic_tokens,
    write_json,
)

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import process_stack
from fastswitch_worker.engine.config import EngineConfig

TARGET_TBT_P50_RATIO = 1.05
PROMPT_TOKENS = 32


class Timings:
    """Per request: (sent, [arrival of each token]); mutated by the clients."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, list[float]]] = []

    def tbt_ms(self) -> list[float]:
        return [(b - a) * 1e3 for _, times in self.requests
                for a, b in zip(times, times[1:], strict=False)]

    def ttft_ms(self) -> list[float]:
        return [(times[0] - sent) * 1e3 for sent, times in self.requests if times]


async def grpc_stream(stub, prompt: list[int], max_tokens: int, timings: Timings) -> None:
    request = scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=prompt),
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))
    sent, times = time.perf_counter(), []
    async for response in stub.Generate(request):
        times.extend([time.perf_counter()] * len(response.token_ids))
    assert len(times) == max_tokens, f"gRPC stream ended after {len(times)} tokens"
    timings.requests.append((sent, times))


async def http_stream(session: aiohttp.ClientSession, url: str, prompt: list[int],
                      max_tokens: int, timings: Timings) -> None:
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    sent, times = time.perf_counter(), []
    async with session.post(url + "/completions", json=body) as response:
        assert response.status == 200, await response.text()
        async for line in response.content:
            if line.startswith(b"data: {"):  # a chunk (not [DONE]); its text is one token
                times.append(time.perf_counter())
    assert len(times) == max_tokens, f"HTTP stream ended after {len(times)} chunks"
    timings.requests.append((sent, times))


async def closed_loop(one_request, *, num_streams: int, num_requests: int) -> None:
    async def client(index: int) -> None:
        for turn in range(num_requests):
            await one_request(synthetic_tokens(index * 1000 + turn, PROMPT_TOKENS))

    await asyncio.gather(*(client(i) for i in range(num_streams)))


async def measure(address: str, http_url: str, args: argparse.Namespace) -> dict[str, Timings]:
    timings = {"grpc": Timings(), "http": Timings()}
    warmup = Timings()
    async with grpc.aio.insecure_channel(address) as channel, aiohttp.ClientSession() as session:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        runners = {
            "grpc": lambda prompt, t: grpc_stream(stub, prompt, args.max_tokens, t),
            "http": lambda prompt, t: http_stream(session, http_url, prompt, args.max_tokens, t),
        }
        for run in runners.values():  # connections up, code paths warm
            await closed_loop(lambda prompt, run=run: run(prompt, warmup),
                              num_streams=args.streams, num_requests=1)
        for _ in range(args.rounds):
            for name, run in runners.items():
                await closed_loop(lambda prompt, run=run, name=name: run(prompt, timings[name]),
                                  num_streams=args.streams, num_requests=args.requests_per_stream)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--streams", type=int, default=8, help="concurrent closed-loop clients")
    parser.add_argument("--requests-per-stream", type=int, default=4,
                        help="sequential requests of each client per phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="gRPC then HTTP phases, this many times (alternated against drift)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--compute-threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 streams, 1 request, 1 round, 16 tokens")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "http_overhead_cpu.json")
    args = parser.parse_args()
    if args.quick:
        args.streams, args.requests_per_stream, args.rounds, args.max_tokens = 2, 1, 1, 16
    engine = EngineConfig(model=args.model, kv_cache_bytes=64 << 20, host_kv_bytes=64 << 20,
                          num_compute_threads=args.compute_threads)
    record = run_record(num_threads=args.compute_threads, is_quick=args.quick)
    # A short tick: what is measured is the token path, not how long admission waits.
    with tempfile.TemporaryDirectory() as log_dir, process_stack(
            engine=engine, scheduler=SchedulerConfig(tick_ms=5), log_dir=Path(log_dir),
            log_level="warning") as stack:
        timings = asyncio.run(measure(stack.address, stack.http_url, args))
    finish_record(record)
    tbt = {name: summarize_ms(t.tbt_ms()) for name, t in timings.items()}
    ttft = {name: summarize_ms(t.ttft_ms()) for name, t in timings.items()}
    ratio = {"tbt_p50": tbt["http"]["p50"] / tbt["grpc"]["p50"],
             "tbt_p99": tbt["http"]["p99"] / tbt["grpc"]["p99"],
             "ttft_p50": ttft["http"]["p50"] / ttft["grpc"]["p50"],
             "ttft_p99": ttft["http"]["p99"] / ttft["grpc"]["p99"]}
    print(f"{args.streams} closed-loop streams x {args.requests_per_stream} requests x "
          f"{args.rounds} rounds, {args.max_tokens} tokens each, model {args.model}")
    print_table(["path", "TBT p50 ms", "TBT p99 ms", "TTFT p50 ms", "TTFT p99 ms", "tokens"],
                [[name, tbt[name]["p50"], tbt[name]["p99"], ttft[name]["p50"], ttft[name]["p99"],
                  tbt[name]["num_samples"]] for name in ("grpc", "http")]
                + [["HTTP/gRPC", ratio["tbt_p50"], ratio["tbt_p99"], ratio["ttft_p50"],
                    ratio["ttft_p99"], ""]])
    meets = ratio["tbt_p50"] <= TARGET_TBT_P50_RATIO
    print(f"target: HTTP TBT p50 <= {TARGET_TBT_P50_RATIO:.2f} x gRPC: "
          f"{'met' if meets else 'MISSED'} ({ratio['tbt_p50']:.3f})")
    write_json(args.out, {
        "benchmark": "http_overhead", "model": args.model, "num_streams": args.streams,
        "num_requests_per_stream": args.requests_per_stream, "num_rounds": args.rounds,
        "max_tokens": args.max_tokens, "compute_threads": args.compute_threads,
        "paths": {"grpc": "fastswitch.v1.Scheduler/Generate on the frontend process",
                  "http": "POST /v1/completions stream=true (SSE) on the same frontend process"},
        "tbt_ms": tbt, "ttft_ms": ttft, "http_over_grpc": ratio,
        "target_tbt_p50_ratio": TARGET_TBT_P50_RATIO, "meets_target": meets, **record})


if __name__ == "__main__":
    main()
