"""Swap bandwidth of one request whose KV is scattered by churn, three ways, same bytes:

  baseline      16-token blocks from the LIFO free list (vLLM v0), one copy per block x
                layer x K/V (Swapper is_per_layer_copies=True);
  baseline_blockmajor  the same scattered blocks, one copy per block (what the block-major
                layout alone buys, without block groups);
  block_groups  the request grown through BlockTable in FastSwitch mode amid the same churn,
                one copy per extent (pair_runs); block_groups_async: the same plans on the
                Swapper's copy thread (submit, then wait), as the FastSwitch engine runs them;
  single_copy   one contiguous copy of the same number of blocks (the ceiling).

Allocation and plans come from the real KVManager / BlockAllocator / BlockTable; copies are
made by the real Swapper, synchronous unless named async (each job timed by the Swapper). The KV is
Llama-3-8B shaped: 8 kv heads x head_dim 128, bf16, 16-token blocks, --num-layers layers.

    python benchmarks/swap_bandwidth.py --quick
    python benchmarks/swap_bandwidth.py --out benchmarks/results/swap_bandwidth_cpu.json
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

import torch
from _common import RESULTS_DIR, finish_record, print_table, run_record, set_threads, write_json

from fastswitch_worker.engine.block_allocator import OutOfBlocksError
from fastswitch_worker.engine.extents import CopyExtent
from fastswitch_worker.engine.kv_manager import KVLayout, KVManager, SwapDirection, SwapPlan
from fastswitch_worker.engine.sequence import Request
from fastswitch_worker.engine.swapper import CopyJob, Swapper

BLOCK_SIZE = 16
NUM_KV_HEADS = 8
HEAD_DIM = 128
MAX_GROUP_BLOCKS = 64  # EngineConfig's default
NUM_OTHERS = 10  # requests running beside the measured one
DECODE_TOKENS_PER_ROUND = 16  # one block per round and request


def _grow(kv: KVManager, request: Request, num_new_tokens: int) -> bool:
    """Mutates: grows a request's GPU KV; False (nothing changed) when the pool is full."""
    if not kv.reserve_gpu(request, request.num_computed_tokens + num_new_tokens):
        return False
    request.num_computed_tokens += num_new_tokens
    return True


class Churn:
    """Other requests arriving, decoding, finishing and being swapped out around the measured
    one, so both pools are fragmented the way serving leaves them. Deterministic per seed;
    the same call sequence drives both allocator modes."""

    def __init__(self, kv: KVManager, seed: int) -> None:
        self.kv = kv
        self.rng = random.Random(seed)
        self.running: list[tuple[Request, int]] = []  # (request, final length in tokens)
        self.parked: list[Request] = []  # swapped out: holds host blocks only
        self._next_id = 0

    def _arrive(self) -> None:
        request = Request(f"other-{self._next_id}", [0])
        self._next_id += 1
        prompt_len = self.rng.randrange(32, 512)
        if _grow(self.kv, request, prompt_len):
            self.running.append((request, prompt_len + self.rng.randrange(16, 768)))

    def _finish(self, index: int) -> None:
        request, _ = self.running.pop(index)
        self.kv.release(request)

    def _park(self, index: int) -> None:
        request, _ = self.running.pop(index)
        try:
            plan = self.kv.plan_swap_out(request)  # reserves host blocks; no copy needed here
        except OutOfBlocksError:  # host pool full: the request is simply dropped
            self.kv.release(request)
            return
        self.kv.complete_swap_out(request, plan, is_cancelled=False)
        self.parked.append(request)

    def round(self) -> None:
        """One decode round of the others, with arrivals, finishes and swap-outs. Mutates."""
        while len(self.running) < NUM_OTHERS:
            self._arrive()
            if self.kv.gpu.num_free_blocks < 64:
                break
        for index in range(len(self.running) - 1, -1, -1):
            request, final_len = self.running[index]
            if request.num_computed_tokens >= final_len or not _grow(
                    self.kv, request, DECODE_TOKENS_PER_ROUND):
                self._finish(index)
        if self.running and self.rng.random() < 0.15:
            self._park(self.rng.randrange(len(self.running)))
        for request in list(self.parked):
            if self.rng.random() < 0.1:
                self.parked.remove(request)
                self.kv.release(request)

    def make_room(self, num_gpu_blocks: int, num_host_blocks: int) -> None:
        """Finish others (newest first) until both pools have the room asked for. Mutates."""
        while self.kv.gpu.num_free_blocks < num_gpu_blocks and self.running:
            self._finish(len(self.running) - 1)
        while self.kv.host.num_free_blocks < num_host_blocks and self.parked:
            self.kv.release(self.parked.pop())


def scattered_plans(kv: KVManager, *, num_tokens: int, seed: int) -> tuple[SwapPlan, SwapPlan]:
    """Grow one request to num_tokens amid churn, swap it out, churn on, plan its swap-in.
    Returns (swap-out plan, swap-in plan); only bookkeeping happens here."""
    churn = Churn(kv, seed)
    for _ in range(40):  # warm the pools up: fragment them before the request arrives
        churn.round()
    num_blocks = -(-num_tokens // BLOCK_SIZE)
    target = Request("measured", [0])
    prompt_len = num_tokens // 4
    churn.make_room(-(-prompt_len // BLOCK_SIZE), 0)
    assert _grow(kv, target, prompt_len)
    while target.num_computed_tokens < num_tokens:
        churn.round()
        num_new = min(DECODE_TOKENS_PER_ROUND, num_tokens - target.num_computed_tokens)
        if not _grow(kv, target, num_new):
            churn.make_room(1, 0)
            assert _grow(kv, target, num_new)
    churn.make_room(0, num_blocks)
    swap_out = kv.plan_swap_out(target)
    kv.complete_swap_out(target, swap_out, is_cancelled=False)
    for _ in range(8):  # others take the freed GPU blocks before the request comes back
        churn.round()
    churn.make_room(num_blocks, 0)
    swap_in = kv.plan_swap_in(target)
    assert swap_in is not None and swap_out.num_blocks == swap_in.num_blocks == num_blocks
    kv.check_integrity()
    return swap_out, swap_in


def single_copy_plan(direction: SwapDirection, num_blocks: int, num_tokens: int) -> SwapPlan:
    return SwapPlan("ceiling", direction, (CopyExtent(0, 0, num_blocks),), num_tokens)


def flush_caches(scratch: torch.Tensor) -> None:
    """Write a buffer larger than the last-level cache, so no copy starts with a warm source
    (a swap reads KV written long ago; host <-> GPU copies never hit a CPU cache)."""
    scratch.add_(1)


def time_plans(cases: dict[str, tuple[Swapper, SwapPlan]], num_repeats: int,
               scratch: torch.Tensor) -> dict[str, dict[str, float | int]]:
    """Run every case's plan num_repeats times through its Swapper (sync), cases interleaved
    so that load from elsewhere spreads over all of them; per case the median job time."""
    jobs: dict[str, list[CopyJob]] = {name: [] for name in cases}
    for _ in range(num_repeats):
        for name, (swapper, plan) in cases.items():
            flush_caches(scratch)
            job = swapper.submit(plan)
            job.wait()
            jobs[name].append(job)
    results = {}
    for name, case_jobs in jobs.items():
        copy_ms = statistics.median(job.copy_ms for job in case_jobs)
        first = case_jobs[0]
        results[name] = {"num_extents": len(first.plan.extents), "num_copies": first.num_copies,
                         "num_bytes": first.num_bytes, "copy_ms_median": copy_ms,
                         "copy_ms_min": min(job.copy_ms for job in case_jobs),
                         "copy_ms_max": max(job.copy_ms for job in case_jobs),
                         "gb_per_s": first.num_bytes / (copy_ms * 1e-3) / 1e9}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 layers, two lengths (seconds)")
    parser.add_argument("--num-layers", type=int, default=None, help="default 32 (quick: 8)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the copying thread (sync copies run on it)")
    parser.add_argument("--repeats", type=int, default=None, help="copies timed per case")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "swap_bandwidth_cpu.json")
    args = parser.parse_args()
    num_threads = set_threads(args.threads)
    num_layers = args.num_layers or (8 if args.quick else 32)
    lengths = (256, 1024) if args.quick else (256, 1024, 4096)
    num_repeats = args.repeats or (3 if args.quick else 11)
    num_pool_blocks = 640  # per pool; 4096 tokens take 256 blocks
    block_shape = (num_layers, 2, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM)
    gpu_kv = torch.ones((num_pool_blocks, *block_shape), dtype=torch.bfloat16)  # "GPU" pool
    host_kv = torch.zeros((num_pool_blocks, *block_shape), dtype=torch.bfloat16)
    block_bytes = gpu_kv[0].numel() * gpu_kv.element_size()
    swappers = {"per_layer": Swapper(gpu_kv, host_kv, is_async=False, is_per_layer_copies=True),
                "extents": Swapper(gpu_kv, host_kv, is_async=False, is_per_layer_copies=False),
                # The engine's FastSwitch path: the copy runs on the Swapper's own thread.
                "extents_async": Swapper(gpu_kv, host_kv, is_async=True,
                                         is_per_layer_copies=False)}
    swapper_of_case = {"baseline": "per_layer", "block_groups": "extents",
                       "block_groups_async": "extents_async",
                       "baseline_blockmajor": "extents", "single_copy": "extents"}
    scratch = torch.zeros(128 << 20, dtype=torch.uint8)
    warmup = single_copy_plan(SwapDirection.OUT, num_pool_blocks, num_pool_blocks * BLOCK_SIZE)
    swappers["extents"].submit(warmup)  # touch every page of both pools once
    record = run_record(num_threads=num_threads, is_quick=args.quick)
    rows: list[dict[str, object]] = []
    for num_tokens in lengths:
        plans: dict[str, tuple[SwapPlan, SwapPlan]] = {}
        for name, is_groups in (("baseline", False), ("block_groups", True)):
            kv = KVManager(KVLayout(BLOCK_SIZE, num_pool_blocks, num_pool_blocks,
                                    is_block_groups=is_groups, is_reuse=is_groups,
                                    max_group_blocks=MAX_GROUP_BLOCKS))
            plans[name] = scattered_plans(kv, num_tokens=num_tokens, seed=args.seed)
        num_blocks = plans["baseline"][0].num_blocks
        plans["block_groups_async"] = plans["block_groups"]
        plans["baseline_blockmajor"] = plans["baseline"]
        plans["single_copy"] = tuple(single_copy_plan(d, num_blocks, num_tokens)
                                     for d in (SwapDirection.OUT, SwapDirection.IN))
        for index, direction in enumerate(SwapDirection):
            cases = {name: (swappers[swapper_of_case[name]], pair[index])
                     for name, pair in plans.items()}
            for name, figures in time_plans(cases, num_repeats, scratch).items():
                rows.append({"num_tokens": num_tokens, "case": name,
                             "direction": direction.value, **figures})
    for swapper in swappers.values():
        swapper.close()
    finish_record(record)
    for row in rows:
        ceiling = next(r for r in rows if r["case"] == "single_copy"
                       and r["num_tokens"] == row["num_tokens"]
                       and r["direction"] == row["direction"])
        row["fraction_of_single_copy"] = row["gb_per_s"] / ceiling["gb_per_s"]
    print_table(["tokens", "case", "dir", "extents", "copies", "MiB", "ms", "GB/s", "of ceiling"],
                [[r["num_tokens"], r["case"], r["direction"], r["num_extents"], r["num_copies"],
                  r["num_bytes"] / 2**20, r["copy_ms_median"], r["gb_per_s"],
                  r["fraction_of_single_copy"]] for r in rows])
    write_json(args.out, {
        "benchmark": "swap_bandwidth",
        "run": record,
        "settings": {"num_layers": num_layers, "num_kv_heads": NUM_KV_HEADS,
                     "head_dim": HEAD_DIM, "dtype": "bfloat16", "block_size": BLOCK_SIZE,
                     "block_bytes": block_bytes, "num_blocks_per_pool": num_pool_blocks,
                     "pool_bytes_each": num_pool_blocks * block_bytes,
                     "max_group_blocks": MAX_GROUP_BLOCKS, "num_repeats": num_repeats,
                     "num_copy_threads": num_threads, "seed": args.seed,
                     "gb": "1e9 bytes; time is the median Swapper job copy_ms"},
        "results": rows,
    })


if __name__ == "__main__":
    main()
