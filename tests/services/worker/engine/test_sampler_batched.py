"""Batched sampling on the logits' device: greedy and unseeded temperature rows in one go,
seeded and filtered rows through their own generators, exactly as before."""

from __future__ import annotations

import pytest
import torch

from fastswitch_worker.engine.sampler import (
    Sampler,
    probabilities,
    sample_with_temperatures,
)
from fastswitch_worker.engine.sequence import SamplingParams


def test_temperature_rows_follow_the_softmax_distribution() -> None:
    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).repeat(40_000, 1)
    temperatures = torch.full((40_000,), 0.8)
    tokens = sample_with_temperatures(logits, temperatures, logits.argmax(dim=-1))
    frequencies = torch.bincount(tokens, minlength=4).float() / tokens.numel()
    expected = torch.softmax(logits[0] / 0.8, dim=-1)
    torch.testing.assert_close(frequencies, expected, atol=0.01, rtol=0)


@pytest.mark.parametrize("poison", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_row_keeps_its_greedy_token_and_others_still_sample(poison: float) -> None:
    torch.manual_seed(1)
    logits = torch.zeros(2, 50)
    logits[0, 7] = 5.0
    logits[0, 3] = poison
    tokens = sample_with_temperatures(logits, torch.tensor([1.0, 1.0]), torch.tensor([7, 0]))
    if poison != float("-inf"):  # -inf is a valid (zero) probability
        assert tokens[0] == 7
    assert 0 <= int(tokens[1]) < 50


def test_seeded_and_filtered_rows_are_unchanged_by_unseeded_rows_beside_them() -> None:
    logits = torch.randn(4, 300, generator=torch.Generator().manual_seed(2)) * 3
    seeded = SamplingParams(temperature=1.1, top_k=30, seed=5)
    alone = Sampler().sample(logits[:1], ["s"], [seeded])
    mixed = Sampler().sample(
        logits, ["s", "u", "g", "p"],
        [seeded, SamplingParams(temperature=0.9), SamplingParams(), SamplingParams(
            temperature=0.7, top_p=0.5, seed=9, logprobs=True)])
    assert mixed[0] == alone[0]
    assert mixed[2] == (int(logits[2].argmax()), None)
    token, logprob = mixed[3]
    assert float(probabilities(logits[3], SamplingParams(temperature=0.7, top_p=0.5))[token]) > 0
    assert logprob == pytest.approx(float(torch.log_softmax(logits[3], -1)[token]))


def test_logprobs_of_batched_rows_come_from_the_raw_distribution() -> None:
    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(3))
    params = [SamplingParams(temperature=0.5, logprobs=True), SamplingParams(logprobs=True),
              SamplingParams(temperature=2.0)]
    samples = Sampler().sample(logits, ["a", "b", "c"], params)
    raw = torch.log_softmax(logits, dim=-1)
    for row in (0, 1):
        token, logprob = samples[row]
        assert logprob == pytest.approx(float(raw[row, token]))
    assert samples[2][1] is None
