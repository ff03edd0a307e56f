"""Property-style: random commands (add, preempt, resume, abort, new turns) at random steps
never break the pools' invariants, never leak a block, and never change greedy output."""

from __future__ import annotations

import random

import pytest

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import RequestStatus, StopConditions

NUM_REQUESTS = 6


def prompt(index: int) -> list[int]:
    return [(index * 41 + k * 13) % 250 + 1 for k in range(5 + 3 * index)]


def engine(mode: str, host_kv_bytes: int, kv_cache_bytes: int = 16 * 8192) -> Engine:
    # tiny: 8 KiB per 4-token block, so 16 blocks = 64 tokens: requests must take turns.
    # One compute thread in both modes (see test_engine_switching.make_engine).
    return Engine(EngineConfig(model="tiny", mode=mode, block_size=4, kv_cache_bytes=kv_cache_bytes,
                               host_kv_bytes=host_kv_bytes, max_num_batched_tokens=16,
                               max_group_blocks=4, blocking_swap_in_max_blocks=2,
                               num_compute_threads=1))


def drive(e: Engine, rng: random.Random | None) -> tuple[dict[str, list[int]], set[str]]:
    tokens: dict[str, list[int]] = {}
    aborted: set[str] = set()
    for index in range(NUM_REQUESTS):
        e.add_request(f"r{index}", prompt(index), stop=StopConditions(max_tokens=10 + index, ignore_eos=True),
                      conversation_id=f"c{index % 2}" if index < 2 else "")
    for _ in range(3000):
        if not e.has_unfinished_requests():
            break
        if rng is not None:
            live = [r for r in e.requests.values() if not r.status.is_done]
            for request in live:
                roll = rng.random()
                if roll < 0.08:
                    e.preempt(request.request_id)
                elif roll < 0.2 and request.status in (RequestStatus.SWAPPED, RequestStatus.SWAPPING_OUT):
                    e.resume(request.request_id)
                elif roll < 0.21 and request.request_id not in ("r0", "r1"):
                    e.abort(request.request_id)
                    aborted.add(request.request_id)
        live = [r for r in e.requests.values() if not r.status.is_done]
        if not [r for r in live if r.status is RequestStatus.RUNNING]:
            for request in live:  # act as the cluster scheduler: bring work back
                if request.status is RequestStatus.SWAPPED:
                    e.resume(request.request_id)
        for output in e.step().outputs:
            tokens.setdefault(output.request_id, []).extend(output.new_token_ids)
        e.kv.check_integrity()
        owned = [b for r in e.requests.values() if r.gpu_table for b in r.gpu_table.block_ids()]
        assert len(owned) == len(set(owned)), "a GPU block is owned twice"
    e.drain_copies()
    e.step()
    assert not e.has_unfinished_requests()
    return tokens, aborted


@pytest.fixture(scope="module")
def uninterrupted() -> dict[str, list[int]]:
    e = engine("fastswitch", 4 << 20, kv_cache_bytes=1 << 20)  # room for all: no switches
    tokens, _ = drive(e, None)
    assert e.counters.num_swap_outs == 0
    e.close()
    return tokens


@pytest.mark.parametrize("mode", ["fastswitch", "baseline"])
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("host_kv_bytes", [4 << 20, 24 * 2048])  # roomy, or so small it evicts
def test_random_switches_keep_pools_consistent_and_output_unchanged(
        mode: str, seed: int, host_kv_bytes: int, uninterrupted) -> None:
    e = engine(mode, host_kv_bytes)
    tokens, aborted = drive(e, random.Random(seed))
    for request_id, expected in uninterrupted.items():
        if request_id not in aborted:
            assert tokens[request_id] == expected, request_id
    assert e.kv.gpu.num_free_blocks == e.kv.gpu.num_blocks
    held_by_cache = sum(entry.host_table.num_blocks for entry in e.kv.conversations.entries())
    assert e.kv.host.num_free_blocks + held_by_cache == e.kv.host.num_blocks
    e.close()
