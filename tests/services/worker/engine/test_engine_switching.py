"""Context switches through the engine: preempt/resume, async copies, reuse, both modes."""

from __future__ import annotations

import threading

import pytest
import torch

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import RequestStatus, StopConditions

PROMPT = [11, 250, 3, 77, 8, 19, 140, 5, 61, 200, 33, 4, 90]
OTHER = [9, 8, 7, 6, 5, 4, 3, 2, 1]
MAX_TOKENS = 28
MODES = ["fastswitch", "baseline"]


def make_engine(mode: str, **overrides) -> Engine:
    # One compute thread in both modes: the baseline's default (every core) fights the rest
    # of a busy machine for its cores and made these tests 3x their FastSwitch twins. Plans,
    # copies (per block x layer x K/V in the baseline) and tokens are what they check, and
    # none depends on threads. 4 MiB of GPU KV: 512 tiny blocks (128 baseline ones), the
    # same group sizes as a bigger pool, without zeroing 256 MiB per engine.
    settings = dict(model="tiny", mode=mode, block_size=4, kv_cache_bytes=4 << 20,
                    host_kv_bytes=8 << 20, max_num_batched_tokens=6, max_group_blocks=8,
                    num_compute_threads=1)
    settings.update(overrides)
    return Engine(EngineConfig(**settings))


def stop() -> StopConditions:
    return StopConditions(max_tokens=MAX_TOKENS, ignore_eos=True)


def collect(engine: Engine, tokens: dict[str, list[int]], num_steps: int | None = None) -> None:
    steps = 0
    while engine.has_unfinished_requests() and (num_steps is None or steps < num_steps):
        for output in engine.step().outputs:
            tokens.setdefault(output.request_id, []).extend(output.new_token_ids)
        engine.kv.check_integrity()
        steps += 1


@pytest.fixture(scope="module")
def reference() -> dict[str, list[int]]:
    engine = make_engine("fastswitch")
    engine.add_request("a", PROMPT, stop=stop())
    engine.add_request("b", OTHER, stop=stop())
    tokens: dict[str, list[int]] = {}
    collect(engine, tokens)
    engine.close()
    return tokens


def kv_of(engine: Engine, request_id: str) -> torch.Tensor:
    request = engine.requests[request_id]
    num_blocks = -(-request.num_computed_tokens // engine.block_size)
    block_ids = request.gpu_table.block_ids()[:num_blocks]
    kv = engine.runner.gpu_kv[block_ids]  # [blocks, layers, 2, block_size, heads, dim]
    flat = kv.transpose(0, 2).flatten(2, 3)  # [2, layers, tokens, heads, dim] per layer/kv
    return flat[:, :, : request.num_computed_tokens].clone()


@pytest.mark.parametrize("mode", MODES)
def test_kv_is_bit_identical_after_swap_out_and_in(mode: str) -> None:
    engine = make_engine(mode)
    engine.add_request("a", PROMPT, stop=stop())
    for _ in range(5):
        engine.step()
    before = kv_of(engine, "a")
    engine.preempt("a")
    engine.step()
    engine.drain_copies()
    assert engine.requests["a"].status is RequestStatus.SWAPPED
    engine.resume("a")
    engine.step()
    engine.drain_copies()
    after = kv_of(engine, "a")
    assert torch.equal(before, after[:, :, : before.shape[2]])
    engine.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("preempt_at_step", [1, 2, 3, 6, 10])
def test_preempted_and_resumed_request_generates_the_uninterrupted_tokens(
        mode: str, preempt_at_step: int, reference) -> None:
    engine = make_engine(mode)
    engine.add_request("a", PROMPT, stop=stop())  # 13 prompt tokens, 6-token budget: chunks
    engine.add_request("b", OTHER, stop=stop())
    tokens: dict[str, list[int]] = {}
    collect(engine, tokens, preempt_at_step)
    for round_index in range(3):  # preempted again and again
        engine.preempt("a")
        collect(engine, tokens, 2 + round_index)
        engine.resume("a")
        collect(engine, tokens, 3)
    collect(engine, tokens)
    assert tokens == reference
    assert engine.counters.num_swap_outs >= 1
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    engine.close()


def test_resume_during_swap_out_cancels_it_and_copies_nothing_back(reference) -> None:
    engine = make_engine("fastswitch")
    gate = threading.Event()
    copy = engine.swapper._copy
    engine.swapper._copy = lambda plan: (gate.wait(), copy(plan))  # hold the copy in flight
    engine.add_request("a", PROMPT, stop=stop())
    engine.add_request("b", OTHER, stop=stop())
    tokens: dict[str, list[int]] = {}
    collect(engine, tokens, 5)
    engine.preempt("a")
    collect(engine, tokens, 1)
    assert engine.requests["a"].status is RequestStatus.SWAPPING_OUT
    engine.resume("a")
    collect(engine, tokens, 1)
    assert engine.requests["a"].status is RequestStatus.RUNNING
    assert engine.counters.num_cancelled_swap_outs == 1
    gate.set()
    collect(engine, tokens)
    assert tokens == reference
    assert engine.counters.num_swap_ins == 0
    engine.close()


def test_swapped_in_request_waits_for_its_copy(reference) -> None:
    engine = make_engine("fastswitch", blocking_swap_in_max_blocks=0)
    gate = threading.Event()
    engine.add_request("a", PROMPT, stop=stop())
    engine.add_request("b", OTHER, stop=stop())
    tokens: dict[str, list[int]] = {}
    collect(engine, tokens, 5)
    engine.preempt("a")
    collect(engine, tokens, 1)
    engine.drain_copies()
    copy = engine.swapper._copy
    engine.swapper._copy = lambda plan: (gate.wait(), copy(plan))
    engine.resume("a")
    generated = len(tokens["a"])
    collect(engine, tokens, 3)
    assert engine.requests["a"].status is RequestStatus.SWAPPING_IN
    assert len(tokens["a"]) == generated  # not computed while its KV is in flight
    gate.set()
    collect(engine, tokens)
    assert tokens == reference
    engine.close()


@pytest.mark.parametrize("in_flight", ["swap_out", "swap_in"])
def test_abort_during_a_copy_leaks_no_blocks(in_flight: str) -> None:
    engine = make_engine("fastswitch", blocking_swap_in_max_blocks=0)
    gate = threading.Event()
    engine.add_request("a", PROMPT, stop=stop())
    collect(engine, {}, 5)
    copy = engine.swapper._copy
    engine.swapper._copy = lambda plan: (gate.wait(), copy(plan))
    engine.preempt("a")
    engine.step()
    if in_flight == "swap_in":
        gate.set()
        engine.drain_copies()
        gate.clear()
        engine.resume("a")
        engine.step()
    expected = RequestStatus.SWAPPING_OUT if in_flight == "swap_out" else RequestStatus.SWAPPING_IN
    assert engine.requests["a"].status is expected
    assert engine.abort("a")
    engine.step()
    gate.set()
    engine.drain_copies()
    engine.step()
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    assert engine.kv.host.num_free_blocks == engine.kv.host.num_blocks
    assert not engine.requests
    engine.close()


def test_reuse_copies_only_new_blocks_on_the_next_swap_out() -> None:
    engine = make_engine("fastswitch")
    engine.add_request("a", PROMPT, stop=StopConditions(max_tokens=40, ignore_eos=True))
    collect(engine, {}, 6)
    for _ in range(3):
        engine.preempt("a")
        collect(engine, {}, 1)
        engine.drain_copies()
        engine.resume("a")
        collect(engine, {}, 3)
    totals = engine.swapper.totals
    num_blocks_now = -(-engine.requests["a"].num_computed_tokens // engine.block_size)
    assert engine.counters.reused_bytes > 0
    # Three swap-outs of a growing request, yet fewer blocks copied out than it holds x 3.
    assert totals[next(iter(totals))].num_bytes < 3 * num_blocks_now * engine.block_bytes
    engine.close()


@pytest.mark.parametrize("mode", MODES)
def test_engine_preempts_the_lowest_client_priority_when_gpu_kv_runs_out(mode: str, reference) -> None:
    probe = make_engine(mode)
    block_bytes = probe.block_bytes
    probe.close()
    # Each request fits alone (41 and 37 tokens), not both together: 14 blocks of 4 tokens,
    # or 4 of the baseline's fixed 16 tokens.
    num_blocks = 14 if mode == "fastswitch" else 4
    engine = make_engine(mode, kv_cache_bytes=num_blocks * block_bytes)
    engine.add_request("a", PROMPT, stop=stop(), client_priority=5)
    engine.add_request("b", OTHER, stop=stop(), client_priority=1)
    tokens: dict[str, list[int]] = {}
    preempted = set()
    while engine.has_unfinished_requests():
        result = engine.step()
        for output in result.outputs:
            tokens.setdefault(output.request_id, []).extend(output.new_token_ids)
            if output.request_id == "a" and output.finish_reason is not None and preempted:
                engine.resume("b")  # the scheduler's job: bring it back once there is room
        for change in result.state_changes:
            if change.reason == "kv_exhausted":
                preempted.add(change.request_id)
        engine.kv.check_integrity()
    assert preempted == {"b"}
    assert tokens == reference
    engine.close()


def tokens_from_scratch(prompt: list[int]) -> list[int]:
    """What a fresh engine with no cached KV generates for `prompt`."""
    fresh = make_engine("fastswitch")
    fresh.add_request("t2", prompt, stop=stop())
    tokens: dict[str, list[int]] = {}
    collect(fresh, tokens)
    fresh.close()
    return tokens["t2"]


def test_next_turn_reuses_the_previous_turns_kv_and_prefills_only_new_tokens() -> None:
    engine = make_engine("fastswitch")
    engine.add_request("t1", PROMPT, stop=stop(), conversation_id="conv")
    turn1: dict[str, list[int]] = {}
    collect(engine, turn1)
    published = engine.kv.conversations.entries()
    assert [e.conversation_id for e in published] == ["conv"]
    turn2_prompt = PROMPT + turn1["t1"] + [42, 43, 44, 45, 46]
    engine.add_request("t2", turn2_prompt, stop=stop(), conversation_id="conv")
    reused = engine.requests["t2"].num_reused_tokens
    assert reused == len(PROMPT) + MAX_TOKENS - 1  # all KV the first turn computed
    turn2: dict[str, list[int]] = {}
    collect(engine, turn2)
    assert turn2 == {"t2": tokens_from_scratch(turn2_prompt)}
    engine.close()


def test_a_diverging_prompt_does_not_reuse_stale_kv() -> None:
    engine = make_engine("fastswitch")
    engine.add_request("t1", PROMPT, stop=stop(), conversation_id="conv")
    collect(engine, {})
    diverging = PROMPT[:5] + [1, 1, 1, 1, 1, 1, 1, 1]
    engine.add_request("t2", diverging, stop=stop(), conversation_id="conv")
    assert engine.requests["t2"].num_reused_tokens == 5
    got: dict[str, list[int]] = {}
    collect(engine, got)
    assert got == {"t2": tokens_from_scratch(diverging)}
    engine.close()


def test_baseline_reuses_nothing_across_turns() -> None:
    engine = make_engine("baseline")
    engine.add_request("t1", PROMPT, stop=stop(), conversation_id="conv")
    out: dict[str, list[int]] = {}
    collect(engine, out)
    engine.add_request("t2", PROMPT + out["t1"] + [5], stop=stop(), conversation_id="conv")
    assert engine.requests["t2"].num_reused_tokens == 0
    engine.close()


@pytest.mark.parametrize("mode, max_extents", [("fastswitch", 2.0), ("baseline", None)])
def test_allocator_figures_show_block_groups_keep_requests_contiguous(mode, max_extents) -> None:
    engine = make_engine(mode, block_size=4, max_num_batched_tokens=64)
    for index in range(4):
        engine.add_request(f"r{index}", PROMPT + [index] * 20, stop=stop())
    for _ in range(25):  # prefill, then decode past a 16-token boundary: tables grow
        engine.step()
    mean_extents, num_unused = engine.kv.allocation_figures(list(engine.queues.running))
    if max_extents is not None:
        assert 1.0 <= mean_extents <= max_extents
    else:  # interleaved single-block allocation: one extent per block, nothing reserved
        assert mean_extents > 1.0 and num_unused == 0
    engine.close()
