"""Jain's fairness index over a sliding window of weighted service (pure)."""

from __future__ import annotations

import pytest

from fastswitch_scheduler.metrics import JainWindow


def test_equal_service_is_perfectly_fair() -> None:
    window = JainWindow(window_s=30)
    window.record(0, {"a": 0, "b": 0}, {"a", "b"})
    window.record(10, {"a": 100, "b": 100}, {"a", "b"})
    assert window.index() == pytest.approx(1.0)


def test_one_tenant_getting_everything_scores_one_over_n() -> None:
    window = JainWindow(window_s=30)
    window.record(0, {"a": 0, "b": 0, "c": 0}, {"a", "b", "c"})
    window.record(5, {"a": 90, "b": 0, "c": 0}, {"a", "b", "c"})
    assert window.index() == pytest.approx(1 / 3)


def test_a_two_to_one_split_between_two_tenants() -> None:
    window = JainWindow(window_s=30)
    window.record(0, {}, {"a", "b"})
    window.record(1, {"a": 200, "b": 100}, {"a", "b"})
    # (300)^2 / (2 * (200^2 + 100^2)) = 0.9
    assert window.index() == pytest.approx(0.9)


def test_only_service_inside_the_window_counts() -> None:
    window = JainWindow(window_s=10)
    window.record(0, {"a": 0, "b": 0}, {"a", "b"})
    window.record(5, {"a": 500, "b": 0}, {"a", "b"})  # a alone, long ago
    window.record(20, {"a": 500, "b": 0}, {"a", "b"})
    window.record(30, {"a": 600, "b": 100}, {"a", "b"})  # the last 10 s: equal shares
    assert window.service_in_window() == {"a": 100, "b": 100}
    assert window.index() == pytest.approx(1.0)


def test_idle_tenants_do_not_count_and_nothing_backlogged_has_no_index() -> None:
    window = JainWindow(window_s=30)
    assert window.index() is None
    window.record(0, {"a": 0, "b": 0}, {"a"})
    assert window.index() is None  # one sample is no window yet
    window.record(1, {"a": 50, "b": 0}, {"a"})
    assert window.service_in_window() == {"a": 50}
    assert window.index() == pytest.approx(1.0)  # b had nothing to ask for
    empty = JainWindow(window_s=30)
    empty.record(0, {"a": 0}, set())
    empty.record(1, {"a": 0}, set())
    assert empty.index() is None


def test_backlogged_tenants_served_nothing_are_equally_starved() -> None:
    window = JainWindow(window_s=30)
    window.record(0, {"a": 0, "b": 0}, {"a", "b"})
    window.record(1, {"a": 0, "b": 0}, {"a", "b"})
    assert window.index() == 1.0


def test_the_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window_s"):
        JainWindow(window_s=0)
