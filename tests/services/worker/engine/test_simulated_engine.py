"""The simulated engine (`fastswitch worker --simulate`): tokens per step, stops, switches that
take modelled time while the others decode, aborts, capacity; the same state changes as the
real engine on the same commands; and no torch in a simulated worker.

Time is a FakeClock whose sleep() only moves its now(): steps and copies take exactly the
modelled time, and no test waits. The figures below are powers of two so that sums of step
and copy times are exact in floating point.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.errors import InvalidRequestError
from fastswitch_worker.engine.outputs import StepResult
from fastswitch_worker.engine.sequence import FinishReason, RequestStatus, StopConditions
from fastswitch_worker.engine.simulated import SimulatedEngine
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.engines import make_engine

STEP_S = 0.125
BLOCK_SIZE = 4
# 62.5 MB per token at 1 GB/s: one 4-token block takes 0.25 s, two steps.
BYTES_PER_TOKEN = 62_500_000
BLOCK_COPY_S = 0.25
PROMPT = list(range(40, 52))  # 12 tokens: 3 blocks


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def now(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.now_s += seconds


def simulated(clock: FakeClock | None = None, *, kv_tokens: int = 256, answer_tokens: int = 0,
              **engine_settings) -> SimulatedEngine:
    engine = dict(block_size=BLOCK_SIZE, max_num_batched_tokens=64, max_num_seqs=8,
                  max_group_blocks=8, blocking_swap_in_max_blocks=0)
    engine.update(engine_settings)
    simulation = SimulatedEngineConfig(
        simulated_step_ms=STEP_S * 1e3, simulated_kv_tokens=kv_tokens,
        simulated_host_kv_tokens=1024, simulated_kv_bytes_per_token=BYTES_PER_TOKEN,
        simulated_copy_gb_per_s=1.0, simulated_answer_tokens=answer_tokens)
    return SimulatedEngine(EngineConfig(**engine), simulation, clock=clock or FakeClock())


def run(engine: SimulatedEngine, num_steps: int | None = None) -> list[StepResult]:
    results = []
    while engine.has_work() and (num_steps is None or len(results) < num_steps):
        results.append(engine.step())
        engine.kv.check_integrity()
        engine.queues.check_integrity()
    return results


def statuses(results: list[StepResult], request_id: str) -> list[tuple[int, RequestStatus]]:
    return [(r.step, c.status) for r in results for c in r.state_changes
            if c.request_id == request_id]


def tokens(results: list[StepResult], request_id: str) -> list[int]:
    return [t for r in results for o in r.outputs if o.request_id == request_id
            for t in o.new_token_ids]


def long(max_tokens: int = 64) -> StopConditions:
    return StopConditions(max_tokens=max_tokens, ignore_eos=True)


def test_a_step_takes_the_step_time_and_gives_every_running_request_one_token():
    clock = FakeClock()
    engine = simulated(clock)
    for name in "abc":
        engine.add_request(name, PROMPT, stop=long())
    results = run(engine, num_steps=5)
    # The prefill is one step and yields the first token; then one token per step each.
    assert [sorted((o.request_id, len(o.new_token_ids)) for o in r.outputs) for r in results] \
        == [[("a", 1), ("b", 1), ("c", 1)]] * 5
    assert [r.num_batched_tokens for r in results] == [36, 3, 3, 3, 3]
    assert clock.now_s == 5 * STEP_S
    assert statuses(results, "a") == [(1, RequestStatus.RUNNING)]


def test_tokens_are_printable_and_depend_on_request_and_position_only():
    engine = simulated()
    engine.add_request("a", PROMPT, stop=long(8))
    engine.add_request("b", PROMPT, stop=long(8))
    results = run(engine)
    first = tokens(results, "a")
    assert all(32 <= t < 127 for t in first) and first != tokens(results, "b")
    again = simulated()  # a new engine, and the request moved with its first 3 tokens
    again.add_request("a", PROMPT + first[:3], stop=long(5))
    assert tokens(run(again), "a") == first[3:]


def test_max_tokens_finishes_with_length_and_frees_the_kv():
    engine = simulated()
    engine.add_request("a", PROMPT, stop=long(5))
    results = run(engine)
    assert len(results) == 5 and len(tokens(results, "a")) == 5
    last = results[-1].outputs[-1]
    assert (last.finish_reason, last.num_generated_tokens, last.num_prompt_tokens) == (
        FinishReason.LENGTH, 5, len(PROMPT))
    assert statuses(results, "a")[-1] == (5, RequestStatus.FINISHED)
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks and not engine.requests


def test_eos_ends_the_answer_unless_the_request_ignores_it_and_stop_tokens_end_it_too():
    engine = simulated(answer_tokens=3)
    engine.add_request("stops", PROMPT, stop=StopConditions(max_tokens=10))
    engine.add_request("ignores", PROMPT, stop=long(10))
    results = run(engine)
    finals = {o.request_id: o for r in results for o in r.outputs if o.finish_reason}
    assert (finals["stops"].finish_reason, finals["stops"].num_generated_tokens) == (
        FinishReason.STOP, 3)
    assert tokens(results, "stops")[-1] in engine.tokenizer.eos_token_ids
    assert (finals["ignores"].finish_reason, finals["ignores"].num_generated_tokens) == (
        FinishReason.LENGTH, 10)
    stop_at = tokens(results, "ignores")[5]
    engine.add_request("ignores", PROMPT, stop=StopConditions(  # the same tokens again
        max_tokens=10, stop_token_ids=(stop_at,), ignore_eos=True))
    final = [o for r in run(engine) for o in r.outputs if o.finish_reason][0]
    assert (final.finish_reason, final.num_generated_tokens) == (FinishReason.STOP, 6)


def test_a_preempted_request_swaps_out_and_in_for_the_copy_time_while_the_other_decodes():
    clock = FakeClock()
    engine = simulated(clock)
    engine.add_request("a", PROMPT, stop=long())
    engine.add_request("b", PROMPT, stop=long())
    results = run(engine, num_steps=2)  # a: 12 prompt tokens + 1 computed = 13 tokens, 4 blocks
    engine.preempt("a")
    results += run(engine, num_steps=12)
    engine.resume("a")
    results += run(engine, num_steps=12)
    copy_steps = int(4 * BLOCK_COPY_S / STEP_S)  # 8 steps each way
    assert statuses(results, "a") == [
        (1, RequestStatus.RUNNING), (3, RequestStatus.SWAPPING_OUT),
        (3 + copy_steps, RequestStatus.SWAPPED), (15, RequestStatus.SWAPPING_IN),
        (15 + copy_steps, RequestStatus.RUNNING)]
    a_steps = [r.step for r in results for o in r.outputs if o.request_id == "a"]
    assert a_steps == [1, 2, *range(15 + copy_steps, 27)]  # nothing while off the GPU
    assert [r.step for r in results for o in r.outputs if o.request_id == "b"] == list(range(1, 27))
    assert clock.now_s == 26 * STEP_S  # the copies never held up a step
    assert (engine.counters.num_swap_outs, engine.counters.num_swap_ins) == (1, 1)
    out = engine.swapper.totals
    assert [(t.num_jobs, t.num_bytes, t.copy_ms) for t in out.values()] == [
        (1, 4 * BLOCK_SIZE * BYTES_PER_TOKEN, 4 * BLOCK_COPY_S * 1e3)] * 2
    assert engine.counters.stall_ms == 0


def test_a_resume_during_the_swap_out_cancels_it_and_the_request_runs_on():
    engine = simulated()
    engine.add_request("a", PROMPT, stop=long())
    run(engine, num_steps=2)
    engine.preempt("a")
    results = run(engine, num_steps=1)
    engine.resume("a")
    results += run(engine, num_steps=3)
    assert statuses(results, "a") == [(3, RequestStatus.SWAPPING_OUT), (4, RequestStatus.RUNNING)]
    assert engine.counters.num_cancelled_swap_outs == 1


def test_baseline_copies_hold_up_the_step():
    clock = FakeClock()
    engine = simulated(clock, mode="baseline")  # 16-token blocks: a 13-token KV is one block
    engine.add_request("a", PROMPT, stop=long())
    engine.add_request("b", PROMPT, stop=long())
    run(engine, num_steps=2)
    engine.preempt("a")
    results = run(engine, num_steps=1)
    assert statuses(results, "a") == [(3, RequestStatus.SWAPPED)]
    assert clock.now_s == 3 * STEP_S + 4 * BLOCK_COPY_S
    assert results[0].stall_ms == 4 * BLOCK_COPY_S * 1e3


def test_an_abort_frees_the_kv_at_once_or_when_its_copy_lands():
    engine = simulated()
    engine.add_request("a", PROMPT, stop=long())
    engine.add_request("b", PROMPT, stop=long())
    run(engine, num_steps=2)
    assert engine.abort("a") and not engine.abort("a")
    engine.preempt("b")
    results = run(engine, num_steps=1)
    assert engine.abort("b")
    results += run(engine)
    finals = {o.request_id: o.finish_reason for r in results for o in r.outputs if o.finish_reason}
    assert finals == {"a": FinishReason.ABORTED, "b": FinishReason.ABORTED}
    assert statuses(results, "b")[-1][1] is RequestStatus.ABORTED
    assert not engine.requests and engine.copies.num_inflight == 0
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    assert engine.kv.host.num_free_blocks == engine.kv.host.num_blocks


def test_capacity_follows_the_kv_budget_and_the_engine_protects_itself_when_it_runs_out():
    engine = simulated(kv_tokens=64)
    assert (engine.kv.gpu.num_blocks, engine.kv.host.num_blocks) == (16, 256)
    assert engine.block_bytes == BLOCK_SIZE * BYTES_PER_TOKEN
    with pytest.raises(InvalidRequestError, match="KV cache capacity of 64 tokens"):
        engine.add_request("too-long", PROMPT, stop=long(60))
    with pytest.raises(InvalidRequestError, match="already in use"):
        engine.add_request("a", PROMPT, stop=long(40))
        engine.add_request("a", PROMPT, stop=long(40))
    engine.add_request("b", PROMPT, stop=long(40))
    engine.update_ranks({"a": 1, "b": 0})
    results = run(engine, num_steps=30)  # 2 x 52 tokens do not fit in 64
    changes = [c for r in results for c in r.state_changes if c.request_id == "b"]
    assert (changes[1].status, changes[1].reason) == (RequestStatus.SWAPPED, "kv_exhausted")
    assert engine.counters.num_kv_exhausted_preemptions == 1
    assert engine.kv.gpu.num_free_blocks < engine.kv.gpu.num_blocks


def test_the_worker_reads_capacity_and_swap_figures_from_it_as_from_the_engine():
    from fastswitch_worker.service import convert

    engine = simulated(kv_tokens=64)
    engine.add_request("a", PROMPT, stop=long(8))
    run(engine, num_steps=1)
    capacity = convert.capacity(engine)
    assert (capacity.num_gpu_blocks, capacity.block_size, capacity.kv_bytes_per_token) == (
        16, BLOCK_SIZE, BYTES_PER_TOKEN)
    assert capacity.num_free_gpu_blocks < 16 and capacity.num_host_blocks == 256
    assert convert.swap_stats(engine).num_swap_outs == 0


def test_make_engine_picks_the_simulated_engine_with_the_worker_settings():
    config = WorkerConfig(simulate=True, simulation=SimulatedEngineConfig(simulated_kv_tokens=128),
                          engine=EngineConfig(block_size=8))
    engine = make_engine(config)
    assert isinstance(engine, SimulatedEngine)
    assert engine.kv.gpu.num_blocks == 16 and engine.model_config.vocab_size == 384
    assert (engine.tokenizer.eos_token_ids, engine.tokenizer.bos_token_id) == ((257,), 256)


def test_a_simulated_worker_never_imports_torch():
    script = textwrap.dedent("""
        import sys
        from fastswitch_worker.service.config import WorkerConfig
        from fastswitch_worker.service.engines import make_engine
        from fastswitch_worker.engine.sequence import StopConditions
        engine = make_engine(WorkerConfig(simulate=True))
        engine.add_request("a", [1, 2, 3], stop=StopConditions(max_tokens=2))
        while engine.has_work():
            engine.step()
        engine.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "numpy"))
        assert not loaded, loaded
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def trace(engine, script: dict[int, list[tuple[str, str]]], max_steps: int = 200) -> list[tuple]:
    """Step `engine` through `script` ({step: [(command, request_id)]} applied before that
    step), waiting for its copies after every step so that both engines see them land at the
    same step; returns what each step reported, timings aside."""
    steps = []
    while engine.has_unfinished_requests() and len(steps) < max_steps:
        for command, request_id in script.get(len(steps) + 1, []):
            getattr(engine, command)(request_id)
        result = engine.step()
        engine.drain_copies()
        engine.kv.check_integrity()
        steps.append((
            result.step, result.num_batched_tokens,
            sorted((c.request_id, c.status, c.reason) for c in result.state_changes),
            sorted((o.request_id, len(o.new_token_ids), o.finish_reason, o.num_generated_tokens)
                   for o in result.outputs),
            [(p.conversation_id, p.num_tokens, p.num_blocks) for p in result.published]))
    return steps


@pytest.mark.parametrize("mode", ["fastswitch", "baseline"])
def test_same_commands_same_state_changes_as_the_real_engine(mode):
    from fastswitch_worker.engine.engine import Engine

    engine_settings = dict(mode=mode, block_size=4, max_num_batched_tokens=16, max_num_seqs=8,
                           max_group_blocks=8)
    # The tiny model holds 2,048 bytes of KV per token (4 layers x K,V x 2 heads x 32 x fp32).
    real = Engine(EngineConfig(model="tiny", kv_cache_bytes=256 * 2048, host_kv_bytes=512 * 2048,
                               num_compute_threads=1, **engine_settings))
    simulation = SimulatedEngineConfig(simulated_kv_tokens=256, simulated_host_kv_tokens=512,
                                       simulated_kv_bytes_per_token=2048)
    fake = SimulatedEngine(EngineConfig(**engine_settings), simulation, clock=FakeClock())
    assert fake.kv.layout == real.kv.layout and fake.block_bytes == real.block_bytes
    script = {4: [("preempt", "a")], 5: [("preempt", "c")], 6: [("resume", "c")],
              9: [("resume", "a")], 12: [("abort", "c")]}
    traces = []
    for engine in (real, fake):
        engine.add_request("a", PROMPT, stop=long(12))
        engine.add_request("b", list(range(60, 69)), stop=long(10), conversation_id="conv")
        engine.add_request("c", list(range(70, 90)), stop=long(14))
        traces.append(trace(engine, script))
        engine.close()
    assert traces[0] == traces[1]
    assert any(step[4] for step in traces[0]) == (mode == "fastswitch")  # b's turn is kept
