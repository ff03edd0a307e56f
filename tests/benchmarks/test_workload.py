"""Synthetic workloads: ShareGPT-like statistics, seeded determinism, replayable token content."""

from __future__ import annotations

import numpy as np
import pytest

from fastswitch_bench.workload import (
    Conversation,
    TenantSpec,
    Turn,
    Workload,
    WorkloadError,
    fit_to_context,
    next_turn_prompt,
    prompt_token_ids,
    synthesize,
)

TENANTS = (TenantSpec("alice", weight=1.0, load_share=1.0), TenantSpec("bob", 2.0, 3.0))


@pytest.fixture(scope="module")
def large_workload() -> Workload:
    return synthesize(
        num_conversations=4000,
        arrival_rate_per_s=2.0,
        tenants=TENANTS,
        seed=7,
        mean_think_time_s=3.0,
    )


def test_turns_per_conversation_average_like_multi_round_sharegpt(large_workload) -> None:
    num_turns = np.array([len(c.turns) for c in large_workload.conversations])
    assert num_turns.min() >= 1
    assert num_turns.mean() == pytest.approx(5.5, abs=0.3)
    assert large_workload.summary()["mean_turns_per_conversation"] == pytest.approx(
        num_turns.mean()
    )


def test_summary_separates_measured_turns_from_the_configured_mean_and_the_context_cut() -> None:
    # The --quick shape: lengths scaled by 0.2 against 640 tokens of context.
    workload = synthesize(
        num_conversations=400,
        arrival_rate_per_s=1.0,
        tenants=TENANTS,
        seed=5,
        length_scale=0.2,
        max_context_tokens=640,
    )
    summary = workload.summary()
    num_turns = sum(len(c.turns) for c in workload.conversations)
    assert summary["mean_turns_per_conversation"] == pytest.approx(num_turns / 400)
    assert summary["configured_mean_turns_per_conversation"] == 5.5
    assert summary["max_context_tokens"] == 640
    # The tight context ends long conversations: turns are dropped and the realised mean falls
    # well below the configured one, while the draws themselves average about 5.5.
    assert summary["num_turns_dropped_to_fit_context"] > 0
    assert summary["mean_turns_before_context_fit"] == pytest.approx(
        (num_turns + summary["num_turns_dropped_to_fit_context"]) / 400
    )
    assert summary["mean_turns_before_context_fit"] == pytest.approx(5.5, abs=0.6)
    assert summary["mean_turns_per_conversation"] < summary["mean_turns_before_context_fit"] - 0.3
    # The description names the configured mean as such, never as the workload's mean.
    assert "configured mean 5.5" in workload.description
    assert "mean 5.5 turns" not in workload.description


def test_a_roomy_context_drops_no_turns(large_workload) -> None:
    summary = large_workload.summary()
    assert summary["num_turns_dropped_to_fit_context"] < 0.01 * summary["num_turns"]


def test_arrivals_are_poisson_at_the_requested_rate(large_workload) -> None:
    arrivals_s = np.array([c.arrival_s for c in large_workload.conversations])
    gaps_s = np.diff(np.concatenate([[0.0], arrivals_s]))
    assert (gaps_s >= 0).all()
    assert gaps_s.mean() == pytest.approx(1 / 2.0, rel=0.06)
    # Exponential gaps: the standard deviation equals the mean.
    assert gaps_s.std() == pytest.approx(gaps_s.mean(), rel=0.1)


def test_think_times_average_the_requested_mean(large_workload) -> None:
    think_times_s = [t for c in large_workload.conversations for t in c.think_time_s]
    assert np.mean(think_times_s) == pytest.approx(3.0, rel=0.05)
    assert all(len(c.think_time_s) == len(c.turns) - 1 for c in large_workload.conversations)


def test_first_messages_are_longer_than_follow_ups_and_answers_are_hundreds(large_workload) -> None:
    first = [c.turns[0].prompt_tokens for c in large_workload.conversations]
    follow_ups = [t.prompt_tokens for c in large_workload.conversations for t in c.turns[1:]]
    outputs = [t.output_tokens for c in large_workload.conversations for t in c.turns]
    assert 120 < np.mean(first) < 250
    assert 30 < np.mean(follow_ups) < 100
    assert 100 < np.mean(outputs) < 300
    assert min(first + follow_ups + outputs) >= 1


def test_tenants_get_conversations_in_proportion_to_load_share(large_workload) -> None:
    counts = large_workload.summary()["tenants"]
    bob_fraction = counts["bob"]["num_conversations"] / 4000
    assert bob_fraction == pytest.approx(0.75, abs=0.03)


def test_length_scale_shrinks_lengths_and_every_conversation_fits_the_context() -> None:
    workload = synthesize(
        num_conversations=500,
        arrival_rate_per_s=1.0,
        tenants=TENANTS,
        seed=3,
        length_scale=0.1,
        max_context_tokens=256,
    )
    summary = workload.summary()
    assert summary["mean_output_tokens_per_turn"] < 40
    for conversation in workload.conversations:
        context = sum(t.prompt_tokens + t.output_tokens for t in conversation.turns)
        assert context <= 256


def test_fit_to_context_clips_the_first_turn_and_drops_overflowing_turns() -> None:
    turns = (Turn(900, 900), Turn(10, 10), Turn(10, 10))
    assert fit_to_context(turns, 1000) == (Turn(500, 500),)
    assert fit_to_context((Turn(100, 100), Turn(10, 10), Turn(500, 500)), 1000) == (
        Turn(100, 100),
        Turn(10, 10),
    )


def test_same_seed_gives_identical_workloads_and_other_seeds_differ() -> None:
    def make(seed: int) -> Workload:
        return synthesize(num_conversations=50, arrival_rate_per_s=1.0, tenants=TENANTS, seed=seed)

    assert make(11) == make(11)
    assert make(11).conversations != make(12).conversations


def test_invalid_arguments_are_rejected_with_workload_errors() -> None:
    with pytest.raises(WorkloadError, match="arrival_rate_per_s"):
        synthesize(num_conversations=5, arrival_rate_per_s=0.0, tenants=TENANTS, seed=1)
    with pytest.raises(WorkloadError, match="tenant"):
        synthesize(num_conversations=5, arrival_rate_per_s=1.0, tenants=(), seed=1)
    with pytest.raises(WorkloadError, match="weight"):
        TenantSpec("carol", weight=0.0, load_share=1.0)
    with pytest.raises(WorkloadError, match="think times"):
        Conversation("c", "alice", 0.0, (Turn(1, 1), Turn(1, 1)), ())


def test_prompt_tokens_are_deterministic_per_conversation_and_turn(large_workload) -> None:
    first, second = large_workload.conversations[:2]
    ids = prompt_token_ids(first, 0, vocab_size=1000, num_reserved_ids=3)
    assert ids == prompt_token_ids(first, 0, vocab_size=1000, num_reserved_ids=3)
    assert len(ids) == first.turns[0].prompt_tokens
    assert min(ids) >= 3 and max(ids) < 1000
    assert ids != prompt_token_ids(second, 0, vocab_size=1000, num_reserved_ids=3)[: len(ids)]
    assert ids != prompt_token_ids(first, 0, vocab_size=1000, seed=1, num_reserved_ids=3)
    with pytest.raises(IndexError):
        prompt_token_ids(first, len(first.turns), vocab_size=1000)


def test_next_turn_prompt_extends_the_previous_prompt_with_answer_and_new_text() -> None:
    previous_prompt, answer, new_text = [1, 2, 3], [7, 8], [4]
    prompt = next_turn_prompt(previous_prompt, answer, new_text)
    assert prompt == [1, 2, 3, 7, 8, 4]
    assert previous_prompt == [1, 2, 3]  # inputs untouched
