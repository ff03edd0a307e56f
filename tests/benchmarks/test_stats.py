"""Percentiles, Jain's index and fairness over backlogged intervals, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from fastswitch_bench.stats import (
    BacklogInterval,
    ServiceEvent,
    StatsError,
    backlogged_fairness,
    cdf,
    jain_index,
    merge_backlog,
    min_samples_for_percentile,
    percentiles,
    summarize,
    unsupported_percentiles,
)


def test_percentiles_interpolate_linearly_between_ranks() -> None:
    assert percentiles([4.0, 1.0, 3.0, 2.0]) == pytest.approx(
        {"p50": 2.5, "p95": 3.85, "p99": 3.97, "p99.9": 3.997}
    )
    assert percentiles([5.0]) == {"p50": 5.0, "p95": 5.0, "p99": 5.0, "p99.9": 5.0}
    assert percentiles([0.0, 10.0], qs=(25, 100)) == {"p25": 2.5, "p100": 10.0}


def test_percentiles_agree_with_numpy_on_a_large_sample() -> None:
    values = np.random.default_rng(0).lognormal(size=1001)
    ours = percentiles(values)
    assert ours["p99.9"] == pytest.approx(np.percentile(values, 99.9))
    assert ours["p50"] == pytest.approx(np.median(values))


def test_statistics_of_no_samples_are_errors_not_numbers() -> None:
    with pytest.raises(StatsError, match="empty"):
        percentiles([])
    with pytest.raises(StatsError, match="empty"):
        summarize([])


def test_summary_has_count_mean_extremes_and_percentiles() -> None:
    summary = summarize([1.0, 2.0, 6.0])
    assert summary["num_samples"] == 3
    assert summary["mean"] == pytest.approx(3.0)
    assert (summary["min"], summary["max"], summary["p50"]) == (1.0, 6.0, 2.0)


def test_a_percentile_needs_enough_samples_for_one_beyond_it() -> None:
    assert [min_samples_for_percentile(q) for q in (0, 50, 95, 99, 99.9)] == [1, 2, 20, 100, 1000]
    assert unsupported_percentiles(65) == ["p99", "p99.9"]
    assert unsupported_percentiles(999) == ["p99.9"]
    assert unsupported_percentiles(1000) == []
    assert unsupported_percentiles(0) == ["p50", "p95", "p99", "p99.9"]
    with pytest.raises(StatsError):
        min_samples_for_percentile(100)


def test_an_unsupported_percentile_lies_between_the_two_largest_samples() -> None:
    values = np.random.default_rng(1).lognormal(size=999)
    second_largest, largest = np.sort(values)[-2:]
    assert second_largest <= percentiles(values)["p99.9"] <= largest


def test_jain_index_is_one_for_equal_shares_and_one_over_n_when_one_takes_all() -> None:
    assert jain_index([3.0, 3.0, 3.0]) == pytest.approx(1.0)
    assert jain_index([5.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain_index([1.0, 2.0]) == pytest.approx(0.9)


@pytest.mark.parametrize("values", [[], [0.0, 0.0], [1.0, -1.0]])
def test_jain_index_rejects_undefined_inputs(values) -> None:
    with pytest.raises(StatsError):
        jain_index(values)


def test_cdf_sorts_values_and_counts_fractions() -> None:
    curve = cdf([3.0, 1.0, 2.0])
    assert curve.values.tolist() == [1.0, 2.0, 3.0]
    assert curve.fractions == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert cdf([]).values.size == 0


def test_merge_backlog_joins_overlapping_and_touching_spans_per_tenant() -> None:
    spans = [
        BacklogInterval("a", 0.0, 2.0),
        BacklogInterval("a", 1.0, 3.0),
        BacklogInterval("a", 3.0, 4.0),
        BacklogInterval("a", 6.0, 7.0),
        BacklogInterval("b", 1.0, 2.0),
    ]
    assert merge_backlog(spans) == [
        BacklogInterval("a", 0.0, 4.0),
        BacklogInterval("a", 6.0, 7.0),
        BacklogInterval("b", 1.0, 2.0),
    ]


# A: backlogged [0, 10); B (weight 2): two overlapping requests [2, 5) and [4, 8); C: [6, 12).
# Pieces: [0,2) A alone; [2,6) A+B; [6,8) A+B+C; [8,10) A+C; [10,12) C alone.
WEIGHTS = {"A": 1.0, "B": 2.0, "C": 1.0}
BACKLOG = [
    BacklogInterval("A", 0.0, 10.0),
    BacklogInterval("B", 2.0, 5.0),
    BacklogInterval("B", 4.0, 8.0),
    BacklogInterval("C", 6.0, 12.0),
]
EVENTS = [
    ServiceEvent(1.0, "A", 100),  # A alone: owed nothing, not counted
    ServiceEvent(3.0, "A", 40),
    ServiceEvent(3.5, "B", 80),  # 80 / weight 2 = 40: equal to A -> Jain 1
    ServiceEvent(6.5, "A", 60),  # A takes all of [6, 8) from B and C -> Jain 1/3
    ServiceEvent(8.0, "A", 10),  # on a boundary: belongs to [8, 10)
    ServiceEvent(9.5, "C", 30),  # [8, 10): 10 vs 30 -> Jain 0.8
    ServiceEvent(11.0, "C", 50),  # C alone, not counted
]


def test_backlogged_fairness_scores_each_contended_interval_on_weighted_service() -> None:
    fairness = backlogged_fairness(EVENTS, BACKLOG, WEIGHTS)
    assert [(i.start_s, i.end_s) for i in fairness.intervals] == [
        (2.0, 6.0),
        (6.0, 8.0),
        (8.0, 10.0),
    ]
    assert [i.jain for i in fairness.intervals] == pytest.approx([1.0, 1 / 3, 0.8])
    assert fairness.intervals[0].weighted_service == {"A": 40.0, "B": 40.0}
    assert fairness.intervals[1].weighted_service == {"A": 60.0, "B": 0.0, "C": 0.0}
    # Duration-weighted: (4 * 1 + 2 * 1/3 + 2 * 0.8) / 8.
    assert fairness.mean_jain == pytest.approx((4 + 2 / 3 + 1.6) / 8)
    assert fairness.min_jain == pytest.approx(1 / 3)
    assert fairness.covered_s == pytest.approx(8.0)


def test_windows_resolve_time_and_skip_contended_windows_without_service() -> None:
    fairness = backlogged_fairness(EVENTS, BACKLOG, WEIGHTS, window_s=1.0)
    assert [(i.start_s, i.end_s) for i in fairness.intervals] == [
        (3.0, 4.0),
        (6.0, 7.0),
        (8.0, 9.0),
        (9.0, 10.0),
    ]
    assert [i.jain for i in fairness.intervals] == pytest.approx([1.0, 1 / 3, 0.5, 0.5])


def test_fairness_without_contention_has_no_figure() -> None:
    fairness = backlogged_fairness(
        [ServiceEvent(0.5, "A", 10)], [BacklogInterval("A", 0.0, 1.0)], {"A": 1.0}
    )
    assert fairness.intervals == ()
    assert fairness.mean_jain is None and fairness.min_jain is None


def test_fairness_needs_a_weight_for_every_backlogged_tenant() -> None:
    with pytest.raises(StatsError, match="no weight"):
        backlogged_fairness([], BACKLOG, {"A": 1.0})
