"""Both copy executors keep a latency histogram per direction (what the worker's /metrics
exports as fastswitch:swap_latency_seconds): one count per finished copy, in its bucket."""

from __future__ import annotations

import torch

from fastswitch_worker.engine.extents import CopyExtent
from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.outputs import (
    COPY_LATENCY_BUCKETS_S,
    SwapCounters,
    count_copy_latency,
    new_latency_counts,
)
from fastswitch_worker.engine.simulated_copies import SimulatedCopies
from fastswitch_worker.engine.swapper import Swapper
from fastswitch_worker.engine.switches import CopyKind


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += max(0.0, seconds)


def plan(direction: SwapDirection, num_blocks: int) -> SwapPlan:
    return SwapPlan("r", direction, (CopyExtent(0, 0, num_blocks),), num_blocks * 4)


def test_a_latency_lands_in_the_first_bucket_that_holds_it() -> None:
    counts = new_latency_counts()
    assert len(counts) == len(COPY_LATENCY_BUCKETS_S) + 1
    count_copy_latency(counts, COPY_LATENCY_BUCKETS_S[0])  # le: the bound itself is inside
    count_copy_latency(counts, 0.003)  # between 0.0025 and 0.005
    count_copy_latency(counts, 60.0)  # above every bound
    assert counts[0] == 1
    assert counts[COPY_LATENCY_BUCKETS_S.index(0.005)] == 1
    assert counts[-1] == 1 and sum(counts) == 3


def test_simulated_copies_count_each_copy_at_its_modelled_duration() -> None:
    clock = FakeClock()
    # 1 MB/s and 4 KiB blocks: 1 block = 4.1 ms, 10 blocks = 41 ms.
    copies = SimulatedCopies(SwapCounters(), clock, block_bytes=4096, bytes_per_s=1e6,
                             is_async=True)
    copies.submit(plan(SwapDirection.OUT, 1), CopyKind.SWAP_OUT)
    copies.submit(plan(SwapDirection.OUT, 10), CopyKind.SWAP_OUT)
    copies.run_now(plan(SwapDirection.IN, 1))
    copies.poll(wait=True)
    out = copies.totals[SwapDirection.OUT].num_jobs_by_latency
    assert sum(out) == copies.totals[SwapDirection.OUT].num_jobs == 2
    assert out[COPY_LATENCY_BUCKETS_S.index(0.005)] == 1
    assert out[COPY_LATENCY_BUCKETS_S.index(0.05)] == 1
    assert sum(copies.totals[SwapDirection.IN].num_jobs_by_latency) == 1


def test_the_swapper_counts_every_copy_its_threads_and_the_engine_ran() -> None:
    # [num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim]
    gpu_kv = torch.zeros(8, 2, 2, 4, 1, 2)
    swapper = Swapper(gpu_kv, torch.zeros_like(gpu_kv), is_async=True, is_per_layer_copies=False)
    jobs = [swapper.submit(plan(SwapDirection.OUT, 2)) for _ in range(3)]
    swapper.run_now(plan(SwapDirection.IN, 2))
    for job in jobs:
        job.wait()
    swapper.close()
    for direction, num_jobs in ((SwapDirection.OUT, 3), (SwapDirection.IN, 1)):
        totals = swapper.totals[direction]
        assert sum(totals.num_jobs_by_latency) == totals.num_jobs == num_jobs
