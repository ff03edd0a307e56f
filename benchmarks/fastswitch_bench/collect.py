"""Turns a ReplayLog and the workers' swap counters into a ConfigResult (pure), and polls
the scheduler for swap figures while a run goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc

from fastswitch.v1 import scheduler_pb2, scheduler_pb2_grpc
from fastswitch_bench.bootstrap import TurnLatencies
from fastswitch_bench.breakdown import RequestPhases, time_breakdown
from fastswitch_bench.replay import CUT_AT_DEADLINE, ReplayLog, tenant_token
from fastswitch_bench.results import ConfigResult, SwapFigures
from fastswitch_bench.stats import BacklogInterval, ServiceEvent


class SwapPoller:
    """Samples the cluster's swap totals every `interval_s`; bandwidth per sample interval."""

    def __init__(self, address: str, admin_tenant: str, interval_s: float = 0.5) -> None:
        self.address = address
        self.metadata = (("authorization", f"Bearer {tenant_token(admin_tenant)}"),)
        self.interval_s = interval_s
        self.samples: list[tuple[int, float]] = []  # (bytes copied, copy ms) totals
        self.latest: dict[str, float] = {}

    async def run(self, stop: asyncio.Event) -> None:
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)
            while True:
                stats = await stub.GetClusterStats(scheduler_pb2.GetClusterStatsRequest(),
                                                   metadata=self.metadata)
                self.latest = _sum_swaps(stats)
                self.samples.append((int(self.latest["swap_out_bytes"] + self.latest["swap_in_bytes"]),
                                     self.latest["copy_ms"]))
                if stop.is_set():
                    return
                try:
                    await asyncio.wait_for(stop.wait(), self.interval_s)
                except TimeoutError:
                    pass

    def bandwidth_gb_per_s(self) -> tuple[float, ...]:
        samples = []
        for (b0, ms0), (b1, ms1) in zip(self.samples, self.samples[1:], strict=False):
            if b1 > b0 and ms1 > ms0:
                samples.append((b1 - b0) / ((ms1 - ms0) / 1e3) / 1e9)
        return tuple(samples)


def _sum_swaps(stats: scheduler_pb2.GetClusterStatsResponse) -> dict[str, float]:
    fields = ("num_swap_outs", "num_recomputes", "swap_out_bytes", "swap_in_bytes", "num_copies",
              "stall_ms", "copy_ms", "reused_bytes", "num_cancelled_swap_outs",
              "num_kv_exhausted_preemptions")
    return {name: float(sum(getattr(w.swap, name) for w in stats.workers)) for name in fields}


def config_result(name: str, log: ReplayLog, *, weights: Mapping[str, float],
                  swaps: Mapping[str, float], bandwidth: tuple[float, ...],
                  settings: Mapping[str, object]) -> ConfigResult:
    ttft, tbt, e2e, events, backlog, phases, turns = [], [], [], [], [], [], []
    served: dict[str, int] = dict.fromkeys(weights, 0)
    for turn in log.turns:
        times = turn.token_times_s
        if turn.done_s is not None:
            backlog.append(BacklogInterval(turn.tenant, turn.sent_s, turn.done_s))
        if not times:
            continue
        gaps = tuple((b - a) * 1e3 for a, b in zip(times, times[1:], strict=False))
        ttft.append((times[0] - turn.sent_s) * 1e3)
        tbt.extend(gaps)
        turns.append(TurnLatencies(turn.request_id, ttft[-1], gaps))
        if not turn.error:
            e2e.append((times[-1] - turn.sent_s) * 1e3)
            if turn.phases_ms:
                phases.append(RequestPhases(turn.request_id, ttft[-1], e2e[-1], turn.phases_ms,
                                            turn.num_preemptions))
        for time_s in times:
            events.append(ServiceEvent(time_s, turn.tenant, 1))
        served[turn.tenant] += len(times)
    swap = SwapFigures(
        num_preemptions=int(swaps.get("num_swap_outs", 0) + swaps.get("num_recomputes", 0)),
        swap_out_bytes=int(swaps.get("swap_out_bytes", 0)),
        swap_in_bytes=int(swaps.get("swap_in_bytes", 0)),
        num_copies=int(swaps.get("num_copies", 0)), stall_ms=swaps.get("stall_ms", 0.0),
        copy_ms=swaps.get("copy_ms", 0.0), bandwidth_gb_per_s=bandwidth)
    return ConfigResult(
        name=name, ttft_ms=ttft, tbt_ms=tbt, e2e_ms=e2e, num_generated_tokens=sum(served.values()),
        duration_s=log.duration_s, tenant_weights=dict(weights), served_tokens_by_tenant=served,
        service_events=events, backlog=backlog, swap=swap,
        time_breakdown=time_breakdown(phases), turns=turns,
        settings={**settings, "num_failed_turns": sum(bool(t.error) for t in log.turns),
                  "num_turns_cut_at_deadline": sum(t.error == CUT_AT_DEADLINE for t in log.turns),
                  "num_turns_not_sent_by_deadline": log.num_turns_not_sent,
                  "reused_bytes": int(swaps.get("reused_bytes", 0)),
                  # Preemptions a worker made itself, out of GPU KV between two ticks (the
                  # others are the policy's).
                  "num_kv_exhausted_preemptions": int(swaps.get("num_kv_exhausted_preemptions", 0)),
                  "num_reused_prompt_tokens": sum(t.num_reused_prompt_tokens for t in log.turns)})
