"""The clients of benchmarks/scale.py: closed-loop `fastswitch.v1.Scheduler/Generate` streams in
a process of their own, counting what arrives inside the measured window.

A client process connects its channels, says so on `ready`, waits for `go`, then runs its
streams until the window (`window`: shared start and end, time.monotonic() seconds, which every
process on the machine shares) is over, cancels what still streams and puts its ClientStats on
`results` (samples as bytes of array("d")). Imports nothing heavy: one of these per frontend.
"""

from __future__ import annotations

import array
import asyncio
import collections
import os
import time
from dataclasses import dataclass, field

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc

STREAM_TIMEOUT_S = 600.0


def prompt(stream_index: int, request_index: int, num_tokens: int) -> list[int]:
    """Deterministic token ids in 1..250, every request its own."""
    seed = stream_index * 7919 + request_index
    return [1 + (seed * 131 + i * 17) % 250 for i in range(num_tokens)]


@dataclass
class ClientStats:
    """What one client process saw inside the window."""

    num_tokens: int = 0
    num_finished: int = 0  # requests that ended OK
    ttft_s: array.array = field(default_factory=lambda: array.array("d"))
    itl_s: array.array = field(default_factory=lambda: array.array("d"))
    codes: collections.Counter = field(default_factory=collections.Counter)  # stream endings


async def one_stream(stub, stream_index: int, settings: dict, window: tuple[float, float],
                     stats: ClientStats) -> None:
    """Closed loop: the next request as soon as the previous one ends."""
    start_s, end_s = window
    request_index = 0
    while time.monotonic() < end_s:
        request = scheduler_pb2.GenerateRequest(
            token_ids=scheduler_pb2.TokenIds(ids=prompt(stream_index, request_index,
                                                        settings["prompt_tokens"])),
            stop=common_pb2.StopConditions(max_tokens=settings["max_tokens"], ignore_eos=True))
        request_index += 1
        sent_s = time.monotonic()
        last_s = None
        try:
            async for response in stub.Generate(request, timeout=STREAM_TIMEOUT_S):
                now_s = time.monotonic()
                num_new = len(response.token_ids)
                if not num_new:
                    continue
                if start_s <= now_s < end_s:
                    stats.num_tokens += num_new
                    if last_s is None:
                        stats.ttft_s.append(now_s - sent_s)
                    else:
                        stats.itl_s.extend([(now_s - last_s) / num_new] * num_new)
                last_s = now_s
            code = "OK"
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        if start_s <= time.monotonic() < end_s:
            stats.codes[code] += 1
            stats.num_finished += code == "OK"


async def run_clients(addresses: list[str], stream_indices: list[int], settings: dict,
                      ready, go, window) -> ClientStats:
    channels = [grpc.aio.insecure_channel(address) for address in addresses
                for _ in range(-(-len(stream_indices) // settings["streams_per_channel"]))]
    try:
        for channel in channels:
            await channel.channel_ready()
        ready.put(os.getpid())
        await asyncio.to_thread(go.wait)
        bounds = (window[0], window[1])
        stubs = [scheduler_pb2_grpc.SchedulerStub(channel) for channel in channels]
        stats = ClientStats()
        tasks = [asyncio.ensure_future(one_stream(stubs[i % len(stubs)], index, settings,
                                                  bounds, stats))
                 for i, index in enumerate(stream_indices)]
        await asyncio.sleep(max(0.0, bounds[1] - time.monotonic()))
        for task in tasks:  # the window is over: what still streams is cancelled
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return stats
    finally:
        for channel in channels:
            await channel.close()


def client_main(addresses: list[str], stream_indices: list[int], settings: dict, ready, go,
                window, results) -> None:
    stats = asyncio.run(run_clients(addresses, stream_indices, settings, ready, go, window))
    results.put({"num_tokens": stats.num_tokens, "num_finished": stats.num_finished,
                 "ttft_s": stats.ttft_s.tobytes(), "itl_s": stats.itl_s.tobytes(),
                 "codes": dict(stats.codes)})
