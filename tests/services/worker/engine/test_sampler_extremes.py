"""The sampler at the edges: no finite parameters make it raise, tiny temperatures are greedy,
filters keep the top token, broken logits fall back to greedy, and ordinary parameters give
transformers' distribution."""

from __future__ import annotations

import math

import pytest
import torch

from fastswitch_worker.engine.sampler import Sampler, probabilities
from fastswitch_worker.engine.sequence import MIN_SAMPLING_TEMPERATURE, SamplingParams

VOCAB = 300
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def spread_logits(num_rows: int = 3, scale: float = 50.0, seed: int = 0) -> torch.Tensor:
    """[num_rows, VOCAB] with a distinct maximum per row and whole-unit gaps."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_rows, VOCAB, generator=generator) * scale


def sample_rows(logits: torch.Tensor, params: SamplingParams) -> list[int]:
    ids = [f"r{i}" for i in range(logits.shape[0])]
    return [token for token, _ in Sampler().sample(logits, ids, [params] * len(ids))]


@pytest.mark.parametrize("temperature", [1e-40, 1e-30, 1e-6, MIN_SAMPLING_TEMPERATURE, 2e-5,
                                         0.7, 1e30, FLOAT32_MAX])
@pytest.mark.parametrize("top_k", [0, 1, 2**31 - 1])
@pytest.mark.parametrize("top_p", [1e-30, 0.5, 1.0])
def test_any_finite_parameters_give_valid_tokens(temperature: float, top_k: int, top_p: float) -> None:
    logits = spread_logits(scale=1e4)  # gaps that overflow exp() once divided by a tiny t
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, seed=7,
                            logprobs=True)
    for token, logprob in Sampler().sample(logits, ["a", "b", "c"], [params] * 3):
        assert 0 <= token < VOCAB
        assert logprob is not None and logprob <= 0


@pytest.mark.parametrize("temperature", [0.0, 1e-40, 1e-30, MIN_SAMPLING_TEMPERATURE / 2])
def test_temperatures_below_the_threshold_are_greedy(temperature: float) -> None:
    params = SamplingParams(temperature=temperature, seed=1)
    assert params.is_greedy
    logits = spread_logits()
    assert sample_rows(logits, params) == logits.argmax(dim=-1).tolist()


def test_a_temperature_just_above_the_threshold_keeps_only_the_argmax() -> None:
    logits = spread_logits()
    probs = probabilities(logits[0], SamplingParams(temperature=2e-5))
    assert probs is not None
    assert int(probs.argmax()) == int(logits[0].argmax())
    assert float(probs.max()) == pytest.approx(1.0)


def test_a_huge_temperature_is_uniform_not_nan() -> None:
    probs = probabilities(spread_logits()[0], SamplingParams(temperature=1e30))
    assert probs is not None
    assert torch.allclose(probs, torch.full((VOCAB,), 1 / VOCAB))


def test_a_tiny_top_p_keeps_exactly_the_top_token() -> None:
    logits = spread_logits(scale=1.0)
    probs = probabilities(logits[0], SamplingParams(temperature=1.0, top_p=1e-30))
    assert probs is not None
    assert int((probs > 0).sum()) == 1 and int(probs.argmax()) == int(logits[0].argmax())


def test_a_huge_top_k_is_no_filter() -> None:
    row = spread_logits(scale=1.0)[0]
    off = probabilities(row, SamplingParams(temperature=1.0))
    huge = probabilities(row, SamplingParams(temperature=1.0, top_k=2**31 - 1))
    assert off is not None and huge is not None and torch.equal(off, huge)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_logits_fall_back_to_greedy_for_that_row_only(poison: float) -> None:
    logits = spread_logits(num_rows=2, scale=1.0)
    if math.isinf(poison) and poison < 0:
        logits[0, :] = poison  # a row of -inf: no distribution at all
    else:
        logits[0, 3] = poison
    params = SamplingParams(temperature=1.0, seed=3)
    tokens = sample_rows(logits, params)
    assert tokens[0] == int(logits[0].argmax())
    assert 0 <= tokens[1] < VOCAB


def test_seeded_sampling_is_deterministic_and_per_request() -> None:
    logits = spread_logits(num_rows=2, scale=2.0)
    params = [SamplingParams(temperature=1.3, top_k=40, top_p=0.9, seed=11),
              SamplingParams(temperature=1.3, top_k=40, top_p=0.9, seed=12)]

    def run() -> list[list[int]]:
        sampler = Sampler()
        return [[t for t, _ in sampler.sample(logits, ["x", "y"], params)] for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert [row[0] for row in first] != [row[1] for row in first]


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 50, 1.0), (1.3, 0, 0.8),
                                                     (0.9, 20, 0.6), (2.0, 5, 0.95)])
def test_probabilities_match_transformers_warpers(temperature: float, top_k: int, top_p: float) -> None:
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature)])
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    logits = spread_logits(num_rows=4, scale=3.0, seed=5)
    expected = torch.softmax(warpers(torch.zeros(4, 1, dtype=torch.long), logits.clone()), dim=-1)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    for row in range(logits.shape[0]):
        probs = probabilities(logits[row], params)
        assert probs is not None
        torch.testing.assert_close(probs, expected[row], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -1.0])
def test_a_non_finite_or_negative_temperature_is_invalid(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=temperature)
