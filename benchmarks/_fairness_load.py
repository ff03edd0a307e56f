"""The load and the observations of benchmarks/fairness.py: closed-loop tenants' streams, and
a sampler of the scheduler's counters and workers (admin calls through a frontend).

Clients run on this process's asyncio loop (the services are processes of their own). Each
stream sends its next request as soon as the previous one ends; a conversation stream sends
turns whose prompt extends the previous turn's prompt and answer (so the kvstore knows where
its KV is and the scheduler routes it there when that worker has room).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass, field

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc

STREAM_TIMEOUT_S = 300.0
MAX_CONVERSATION_TOKENS = 600  # a conversation starts over before it outgrows the tight KV


@dataclass(frozen=True)
class TenantLoad:
    name: str
    token: str
    weight: float
    num_streams: int
    start_s: float = 0.0  # after the run's start (a newcomer arrives late)
    is_conversation: bool = False


@dataclass
class Observed:
    """What the clients saw (arrival times in time.monotonic() seconds)."""

    ttft_ms: list[float] = field(default_factory=list)
    tbt_ms: list[float] = field(default_factory=list)
    tbt_ms_by_tenant: dict[str, list[float]] = field(default_factory=dict)
    num_finished: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


def prompt(seed: int, num_tokens: int) -> list[int]:
    return [1 + (seed * 131 + i * 17) % 250 for i in range(num_tokens)]


async def one_stream(stub, load: TenantLoad, index: int, settings: dict, end_s: float,
                     observed: Observed) -> None:
    await asyncio.sleep(load.start_s)
    metadata = (("authorization", f"Bearer {load.token}"),)
    history: list[int] = []
    turn = 0
    while time.monotonic() < end_s:
        seed = zlib.crc32(f"{load.name}/{index}/{turn}".encode()) % 10_000
        fresh = prompt(seed, settings["prompt_tokens"])
        if len(history) + len(fresh) + settings["max_tokens"] > MAX_CONVERSATION_TOKENS:
            history = []
        ids = history + fresh if load.is_conversation else fresh
        request = scheduler_pb2.GenerateRequest(
            token_ids=scheduler_pb2.TokenIds(ids=ids),
            stop=common_pb2.StopConditions(max_tokens=settings["max_tokens"], ignore_eos=True),
            conversation_id=f"{load.name}-{index}" if load.is_conversation else "")
        turn += 1
        sent_s, last_s, answer = time.monotonic(), None, []
        try:
            async for response in stub.Generate(request, metadata=metadata, timeout=STREAM_TIMEOUT_S):
                if not response.token_ids:
                    continue
                now_s = time.monotonic()
                if last_s is None:
                    observed.ttft_ms.append((now_s - sent_s) * 1e3)
                else:
                    gap_ms = (now_s - last_s) * 1e3 / len(response.token_ids)
                    observed.tbt_ms.extend([gap_ms] * len(response.token_ids))
                    observed.tbt_ms_by_tenant.setdefault(load.name, []).extend(
                        [gap_ms] * len(response.token_ids))
                last_s = now_s
                answer.extend(response.token_ids)
            observed.num_finished[load.name] = observed.num_finished.get(load.name, 0) + 1
            history = ids + answer
        except grpc.aio.AioRpcError as exc:
            if time.monotonic() < end_s:
                key = f"{load.name}:{exc.code().name}"
                observed.errors[key] = observed.errors.get(key, 0) + 1
                await asyncio.sleep(0.1)


async def sample_forever(stub, admin_token: str, period_s: float, samples: list[dict]) -> None:
    """Appends {t, tenants: {name: Tenant fields}, workers: [...], num_queued} every period."""
    metadata = (("authorization", f"Bearer {admin_token}"),)
    while True:
        try:
            tenants = await stub.ListTenants(scheduler_pb2.ListTenantsRequest(), metadata=metadata,
                                             timeout=5)
            stats = await stub.GetClusterStats(scheduler_pb2.GetClusterStatsRequest(),
                                               metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError:
            await asyncio.sleep(period_s)
            continue
        samples.append({
            "t": time.monotonic(),
            "tenants": {t.name: {"virtual_tokens": t.virtual_tokens, "weight": t.weight,
                                 "prompt": t.num_served_prompt_tokens,
                                 "generated": t.num_served_generated_tokens,
                                 "running": t.num_running_requests, "queued": t.num_queued_requests}
                        for t in tenants.tenants},
            "workers": [{"id": w.worker_id, "running": w.num_running_requests,
                         "swapped": w.num_swapped_requests, "swap_outs": w.swap.num_swap_outs,
                         "recomputes": w.swap.num_recomputes,
                         "kv_exhausted": w.swap.num_kv_exhausted_preemptions} for w in stats.workers],
            "num_queued": stats.num_queued_requests,
        })
        await asyncio.sleep(period_s)


async def drive(address: str, loads: list[TenantLoad], settings: dict, duration_s: float,
                admin_token: str, period_s: float = 0.25) -> tuple[Observed, list[dict], float]:
    """Runs the load for `duration_s`; returns what the clients saw, the samples and the
    run's start (monotonic seconds)."""
    observed, samples = Observed(), []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        start_s = time.monotonic()
        end_s = start_s + duration_s
        sampler = asyncio.ensure_future(sample_forever(stub, admin_token, period_s, samples))
        streams = [asyncio.ensure_future(one_stream(stub, load, i, settings, end_s, observed))
                   for load in loads for i in range(load.num_streams)]
        await asyncio.sleep(duration_s)
        for task in [*streams, sampler]:
            task.cancel()
        await asyncio.gather(*streams, sampler, return_exceptions=True)
    return observed, samples, start_s
