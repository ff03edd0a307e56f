"""The paper's Random and Markov priority changes: frequency, shape and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fastswitch_scheduler.priority_trace import (
    IterationClock,
    PriorityTrace,
    markov_transition_matrix,
)

REQUEST_IDS = [f"req-{i}" for i in range(40)]


def _history(trace: PriorityTrace, num_steps: int, request_ids=REQUEST_IDS) -> np.ndarray:
    """[num_steps, num_requests] levels, asking at every step."""
    return np.array(
        [
            [trace.priorities_at(request_ids, step)[r] for r in request_ids]
            for step in range(num_steps)
        ]
    )


@pytest.mark.parametrize("pattern", ["random", "markov"])
def test_priorities_change_at_the_update_probability_per_request_per_step(pattern) -> None:
    trace = PriorityTrace(pattern=pattern, update_probability=0.04, num_levels=4, seed=1)
    history = _history(trace, 1500)
    change_rate = (history[1:] != history[:-1]).mean()
    assert change_rate == pytest.approx(0.04, rel=0.1)
    assert history.min() >= 0 and history.max() <= 3


def test_markov_changes_mostly_move_to_a_neighbouring_level() -> None:
    trace = PriorityTrace(pattern="markov", update_probability=0.2, num_levels=8, seed=2)
    history = _history(trace, 400)
    jumps = np.abs(np.diff(history, axis=0))
    jumps = jumps[jumps > 0]
    assert (jumps == 1).mean() > 0.45
    random_trace = PriorityTrace(pattern="random", update_probability=0.2, num_levels=8, seed=2)
    random_jumps = np.abs(np.diff(_history(random_trace, 400), axis=0))
    assert jumps.mean() < random_jumps[random_jumps > 0].mean()


def test_transition_matrix_rows_are_distributions_that_favour_near_levels() -> None:
    matrix = markov_transition_matrix(5)
    assert np.allclose(matrix.sum(axis=1), 1.0)
    assert np.all(np.diag(matrix) == 0)
    assert matrix[2, 1] == matrix[2, 3] > matrix[2, 0] == matrix[2, 4]


def test_same_seed_replays_identically_regardless_of_other_requests_and_query_order() -> None:
    full = _history(
        PriorityTrace(pattern="markov", update_probability=0.05, num_levels=4, seed=9), 300
    )
    # Only every 7th step asked, in reverse order, about a subset: the same levels at those steps.
    sparse_trace = PriorityTrace(pattern="markov", update_probability=0.05, num_levels=4, seed=9)
    subset = REQUEST_IDS[::-3]
    for step in range(0, 300, 7):
        levels = sparse_trace.priorities_at(subset, step)
        assert [levels[r] for r in subset] == [full[step, REQUEST_IDS.index(r)] for r in subset]
    other = _history(
        PriorityTrace(pattern="markov", update_probability=0.05, num_levels=4, seed=10), 300
    )
    assert not np.array_equal(full, other)


def test_zero_update_probability_keeps_priorities_fixed() -> None:
    history = _history(
        PriorityTrace(pattern="random", update_probability=0.0, num_levels=3, seed=0), 50
    )
    assert (history == history[0]).all()


def test_asking_about_an_earlier_step_is_an_error_and_forget_restarts_a_request() -> None:
    trace = PriorityTrace(pattern="random", update_probability=0.5, num_levels=3, seed=0)
    trace.priorities_at(["a"], 10)
    with pytest.raises(ValueError, match="already at step 10"):
        trace.priorities_at(["a"], 9)
    trace.forget("a")
    trace.forget("never-seen")
    assert set(trace.priorities_at(["a"], 0)) == {"a"}


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="pattern"):
        PriorityTrace(pattern="zipf", update_probability=0.1, num_levels=3, seed=0)
    with pytest.raises(ValueError, match="update_probability"):
        PriorityTrace(pattern="random", update_probability=1.5, num_levels=3, seed=0)
    with pytest.raises(ValueError, match="at least 2 levels"):
        PriorityTrace(pattern="random", update_probability=0.1, num_levels=1, seed=0)


def test_the_clock_advances_by_the_busiest_workers_iterations_per_tick() -> None:
    clock = IterationClock()
    assert clock.tick() == 0  # no worker ran: priorities stand still
    clock.add("w0", 3)
    clock.add("w1", 2)
    clock.add("w1", 3)  # coalesced reports add up
    assert clock.tick() == 5
    assert clock.tick() == 5  # counted once
    clock.add("w0", 1)
    assert clock.tick() == 6
