"""Runs of contiguous block ids and the swap plans cut from them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastswitch_worker.engine.extents import CopyExtent, Extent, pair_runs, runs_of


def test_extent_stop_is_one_past_its_last_block() -> None:
    assert Extent(start=5, num_blocks=3).stop == 8


def test_runs_of_coalesces_ascending_neighbours_only() -> None:
    assert runs_of([3, 4, 5, 9, 10, 2, 1, 7]) == [
        Extent(3, 3),
        Extent(9, 2),
        Extent(2, 1),
        Extent(1, 1),
        Extent(7, 1),
    ]


def test_runs_of_an_empty_list_is_empty() -> None:
    assert runs_of([]) == []


def test_runs_of_one_long_run_is_one_extent() -> None:
    assert runs_of(list(range(16, 48))) == [Extent(16, 32)]


def test_pair_runs_is_one_copy_when_both_sides_are_contiguous() -> None:
    assert pair_runs([4, 5, 6, 7], [0, 1, 2, 3]) == [CopyExtent(4, 0, 4)]


def test_pair_runs_cuts_where_the_destination_breaks_even_if_the_source_does_not() -> None:
    assert pair_runs([0, 1, 2, 3, 4], [10, 11, 20, 21, 22]) == [
        CopyExtent(0, 10, 2),
        CopyExtent(2, 20, 3),
    ]


def test_pair_runs_cuts_where_the_source_breaks() -> None:
    assert pair_runs([0, 1, 7, 8], [3, 4, 5, 6]) == [CopyExtent(0, 3, 2), CopyExtent(7, 5, 2)]


def test_pair_runs_of_scattered_blocks_is_one_copy_per_block() -> None:
    assert pair_runs([5, 2, 9], [0, 1, 2]) == [
        CopyExtent(5, 0, 1),
        CopyExtent(2, 1, 1),
        CopyExtent(9, 2, 1),
    ]


def test_pair_runs_refuses_lists_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one to one"):
        pair_runs([0, 1, 2], [0, 1])


block_id_lists = st.lists(st.integers(min_value=0, max_value=40), max_size=30)


@settings(max_examples=200, deadline=None)
@given(block_ids=block_id_lists)
def test_runs_of_expands_back_to_its_input_and_is_maximal(block_ids: list[int]) -> None:
    runs = runs_of(block_ids)
    assert [b for run in runs for b in range(run.start, run.stop)] == block_ids
    assert all(run.num_blocks >= 1 for run in runs)
    assert all(after.start != before.stop for before, after in zip(runs, runs[1:], strict=False))


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=30))
def test_pair_runs_copies_every_pair_once_in_maximal_pieces(pairs: list[tuple[int, int]]) -> None:
    src_block_ids = [src for src, _ in pairs]
    dst_block_ids = [dst for _, dst in pairs]
    plan = pair_runs(src_block_ids, dst_block_ids)
    expanded = [
        (copy.src_start + i, copy.dst_start + i) for copy in plan for i in range(copy.num_blocks)
    ]
    assert expanded == pairs
    for before, after in zip(plan, plan[1:], strict=False):
        continues_src = after.src_start == before.src_start + before.num_blocks
        continues_dst = after.dst_start == before.dst_start + before.num_blocks
        assert not (continues_src and continues_dst)
