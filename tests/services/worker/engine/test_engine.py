"""Engine behaviour on CPU with the tiny dummy model: batching, stops, aborts."""

from __future__ import annotations

import pytest

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.errors import InvalidRequestError
from fastswitch_worker.engine.sequence import FinishReason, SamplingParams, StopConditions

PROMPTS = [[5, 17, 42, 99, 3, 8, 250, 7, 1, 64, 12], [300, 2, 9], list(range(20, 57)), [7] * 6]


def make_engine(**overrides) -> Engine:
    settings = dict(model="tiny", block_size=4, kv_cache_bytes=None, host_kv_bytes=8 << 20,
                    max_num_batched_tokens=32, max_group_blocks=8)
    settings.update(overrides)
    engine = Engine(EngineConfig(**settings))
    return engine


def run_to_completion(engine: Engine, max_steps: int = 2000) -> dict[str, list[int]]:
    tokens: dict[str, list[int]] = {}
    for _ in range(max_steps):
        if not engine.has_unfinished_requests():
            break
        for output in engine.step().outputs:
            tokens.setdefault(output.request_id, []).extend(output.new_token_ids)
        engine.kv.check_integrity()
    assert not engine.has_unfinished_requests()
    return tokens


def greedy(max_tokens: int = 12) -> dict:
    return dict(sampling=SamplingParams(), stop=StopConditions(max_tokens=max_tokens, ignore_eos=True))


@pytest.fixture(scope="module")
def solo_outputs() -> dict[int, list[int]]:
    engine = make_engine()
    outputs = {}
    for index, prompt in enumerate(PROMPTS):
        engine.add_request(f"r{index}", prompt, **greedy())
        outputs[index] = run_to_completion(engine)[f"r{index}"]
    engine.close()
    return outputs


def test_greedy_batch_equals_each_request_alone(solo_outputs) -> None:
    engine = make_engine()
    for index, prompt in enumerate(PROMPTS):
        engine.add_request(f"r{index}", prompt, **greedy())
    batch = run_to_completion(engine)
    assert {int(k[1:]): v for k, v in batch.items()} == solo_outputs
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    engine.close()


def test_chunked_prefill_under_a_small_token_budget_gives_the_same_tokens(solo_outputs) -> None:
    engine = make_engine(max_num_batched_tokens=5)
    for index, prompt in enumerate(PROMPTS):
        engine.add_request(f"r{index}", prompt, **greedy())
    batch = run_to_completion(engine)
    assert {int(k[1:]): v for k, v in batch.items()} == solo_outputs
    engine.close()


def test_stops_on_max_tokens_and_stop_token() -> None:
    engine = make_engine()
    engine.add_request("a", PROMPTS[0], **greedy(max_tokens=5))
    first = run_to_completion(engine)["a"]
    assert len(first) == 5
    engine.add_request("b", PROMPTS[0], sampling=SamplingParams(),
                       stop=StopConditions(max_tokens=20, stop_token_ids=(first[2],), ignore_eos=True))
    finals = []
    while engine.has_unfinished_requests():
        finals += [o for o in engine.step().outputs if o.finish_reason]
    assert finals[0].finish_reason is FinishReason.STOP
    assert finals[0].num_generated_tokens == first.index(first[2]) + 1
    engine.close()


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    engine = make_engine()
    stop = StopConditions(max_tokens=10, ignore_eos=True)
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        engine.add_request(name, PROMPTS[0], stop=stop,
                           sampling=SamplingParams(temperature=1.0, top_p=0.9, top_k=50, seed=seed))
    out = run_to_completion(engine)
    assert out["a"] == out["b"]
    assert out["a"] != out["c"]
    engine.close()


@pytest.mark.parametrize("abort_after_steps", [1, 4])
def test_abort_mid_prefill_or_decode_frees_its_blocks(abort_after_steps: int, solo_outputs) -> None:
    engine = make_engine(max_num_batched_tokens=8)
    engine.add_request("victim", PROMPTS[2], **greedy(max_tokens=30))
    engine.add_request("other", PROMPTS[0], **greedy())
    for _ in range(abort_after_steps):
        engine.step()
    assert engine.abort("victim")
    out = run_to_completion(engine)
    assert out["other"] == solo_outputs[0]
    assert engine.kv.gpu.num_free_blocks == engine.kv.gpu.num_blocks
    assert engine.kv.host.num_free_blocks == engine.kv.host.num_blocks
    engine.close()


def test_invalid_requests_are_refused_clearly() -> None:
    engine = make_engine()
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.add_request("e", [])
    with pytest.raises(InvalidRequestError, match="context"):
        engine.add_request("long", [1] * 10, stop=StopConditions(max_tokens=engine.max_model_len))
    with pytest.raises(InvalidRequestError, match="token ids"):
        engine.add_request("vocab", [engine.model_config.vocab_size])
    engine.add_request("dup", [1, 2])
    with pytest.raises(InvalidRequestError, match="already"):
        engine.add_request("dup", [1, 2])
    engine.close()


def test_ranks_are_kept_only_for_live_requests():
    """The cluster scheduler sends ranks every tick; a worker that kept every id it ever
    heard of would grow without bound over its lifetime."""
    engine = make_engine()
    engine.add_request("live", PROMPTS[0], **greedy(40))
    engine.add_request("short", PROMPTS[1], **greedy(2))
    engine.update_ranks({"live": 3, "short": 2, "never-admitted": 1})
    assert engine.scheduler.ranks == {"live": 3, "short": 2}
    run_to_completion(engine)
    assert engine.scheduler.ranks == {}
    engine.close()


def test_the_tiny_demo_preset_answers_in_visible_text_not_an_empty_line():
    """Random weights, but an output layer shaped to printable ASCII: `fastswitch generate`
    on the demo stack shows (deterministic) noise rather than an EOS at once."""
    engine = make_engine()
    prompt = engine.tokenizer.encode("Hello")
    engine.add_request("demo", prompt, sampling=SamplingParams(), stop=StopConditions(max_tokens=16))
    tokens = run_to_completion(engine)["demo"]
    engine.close()
    assert len(tokens) == 16 and all(0x20 <= t < 0x7F for t in tokens)
