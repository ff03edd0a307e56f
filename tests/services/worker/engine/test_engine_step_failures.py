"""Engine.fail_step(): after step() raised, the step's requests are aborted through the normal
abort path, their KV is freed, and the engine computes the same tokens as before."""

from __future__ import annotations

import pytest

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import FinishReason, SamplingParams, StopConditions

PROMPT = [1, 40, 41, 42, 43, 44, 45]


def make_engine() -> Engine:
    return Engine(EngineConfig(model="tiny", block_size=4, kv_cache_bytes=4 << 20,
                               host_kv_bytes=8 << 20, max_num_batched_tokens=64))


def greedy(max_tokens: int = 6) -> dict:
    return dict(sampling=SamplingParams(), stop=StopConditions(max_tokens=max_tokens, ignore_eos=True))


def run_to_completion(engine: Engine) -> dict[str, list]:
    outputs: dict[str, list] = {}
    for _ in range(500):
        if not engine.has_work():
            break
        for output in engine.step().outputs:
            outputs.setdefault(output.request_id, []).append(output)
        engine.kv.check_integrity()
    assert not engine.has_unfinished_requests()
    return outputs


def tokens(outputs: list) -> list[int]:
    return [t for o in outputs for t in o.new_token_ids]


def fail_next(engine: Engine, method: str, owner) -> None:
    original = getattr(owner, method)

    def failing(*args, **kwargs):
        setattr(owner, method, original)
        raise RuntimeError(f"injected fault in {method}")

    setattr(owner, method, failing)


def assert_all_kv_free(engine: Engine) -> None:
    engine.kv.check_integrity()
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    assert engine.kv.host.num_free_blocks == engine.kv.host.num_blocks


def test_a_failed_forward_aborts_the_batch_frees_its_kv_and_later_requests_are_unaffected() -> None:
    engine = make_engine()
    engine.add_request("reference", PROMPT, **greedy())
    reference = tokens(run_to_completion(engine)["reference"])

    engine.add_request("a", PROMPT, **greedy())
    engine.add_request("b", PROMPT[:3], **greedy())
    engine.step()  # both prefilled: they hold KV now
    fail_next(engine, "run", engine.runner)
    with pytest.raises(RuntimeError, match="injected"):
        engine.step()
    assert engine.fail_step() == ("a", "b")
    engine.kv.check_integrity()
    outputs = run_to_completion(engine)
    assert {o.finish_reason for rid in ("a", "b") for o in outputs[rid]} == {FinishReason.ABORTED}
    assert_all_kv_free(engine)

    engine.add_request("after", PROMPT, **greedy())
    assert tokens(run_to_completion(engine)["after"]) == reference
    assert_all_kv_free(engine)
    engine.close()


def test_a_failure_before_the_batch_is_set_up_aborts_every_live_request() -> None:
    engine = make_engine()
    engine.add_request("a", PROMPT, **greedy())
    engine.step()
    engine.add_request("b", PROMPT, **greedy())
    fail_next(engine, "schedule", engine.scheduler)
    with pytest.raises(RuntimeError, match="injected"):
        engine.step()
    assert set(engine.fail_step()) == {"a", "b"}
    run_to_completion(engine)
    assert_all_kv_free(engine)
    engine.close()


def test_a_failed_copy_fails_the_step_and_the_abort_path_frees_every_block() -> None:
    engine = make_engine()
    engine.add_request("a", PROMPT, **greedy(20))
    engine.add_request("b", PROMPT[:3], **greedy(20))
    engine.step()

    def failing_copy(plan):
        raise RuntimeError("injected copy fault")

    engine.swapper._copy = failing_copy
    engine.preempt("a")
    engine.step()  # a's swap-out runs on the copy thread and fails there
    engine.copies.wait_for_any(10.0)
    with pytest.raises(RuntimeError, match="swap out of a failed"):
        engine.step()  # the failure surfaces where finished copies are applied
    assert set(engine.fail_step()) == {"a", "b"}
    run_to_completion(engine)
    assert_all_kv_free(engine)
    engine.close()


def test_sampling_that_cannot_overflow_needs_no_failure_path() -> None:
    engine = make_engine()
    for index, temperature in enumerate((1e-40, 1e-30, 1e30)):
        engine.add_request(f"t{index}", PROMPT, sampling=SamplingParams(temperature=temperature),
                           stop=StopConditions(max_tokens=4, ignore_eos=True))
    outputs = run_to_completion(engine)
    assert all(len(tokens(outputs[f"t{i}"])) == 4 for i in range(3))
    engine.close()
