"""Free-run bookkeeping of one KV pool, in block-group and in vLLM v0 baseline mode."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastswitch_worker.engine.block_allocator import BlockAllocator, OutOfBlocksError
from fastswitch_worker.engine.extents import Extent, runs_of


def _blocks(extents: list[Extent]) -> list[int]:
    return [block_id for extent in extents for block_id in range(extent.start, extent.stop)]


def _pool_with_holes(hole_sizes: list[int]) -> tuple[BlockAllocator, list[Extent]]:
    """A 64-block pool whose free space is exactly the given holes, one allocated block apart."""
    allocator = BlockAllocator(64, max_group_blocks=64)
    allocator.allocate(64)
    holes = []
    start = 1
    for size in hole_sizes:
        holes.append(Extent(start, size))
        start += size + 1
    allocator.free(holes)
    allocator.check_integrity()
    return allocator, holes


def test_fresh_pool_hands_out_one_run_from_the_front() -> None:
    allocator = BlockAllocator(16, max_group_blocks=8)
    assert allocator.allocate(5) == [Extent(0, 5)]
    assert allocator.allocate(3) == [Extent(5, 3)]
    assert allocator.num_free_blocks == 8
    assert allocator.free_runs() == [Extent(8, 8)]
    allocator.check_integrity()


def test_request_takes_the_smallest_run_that_fits() -> None:
    allocator, holes = _pool_with_holes([6, 2, 3])
    assert allocator.allocate(3) == [Extent(holes[2].start, 3)]
    assert allocator.allocate(2) == [Extent(holes[1].start, 2)]
    assert allocator.free_runs() == [holes[0]]
    allocator.check_integrity()


def test_best_fit_run_names_the_run_allocate_would_use_without_taking_it() -> None:
    for is_contiguous in (True, False):
        allocator = BlockAllocator(16, max_group_blocks=16, is_contiguous=is_contiguous)
        allocator.allocate(16)
        allocator.free([Extent(0, 5), Extent(6, 3), Extent(10, 3)])
        assert allocator.best_fit_run(3) == Extent(6, 3)
        assert allocator.best_fit_run(4) == Extent(0, 5)
        assert allocator.best_fit_run(6) is None
        assert allocator.num_free_blocks == 11


def test_is_free_is_false_outside_the_pool() -> None:
    allocator = BlockAllocator(4, max_group_blocks=4)
    allocator.allocate(1)
    assert [allocator.is_free(block_id) for block_id in (-1, 0, 1, 3, 4)] == [
        False,
        False,
        True,
        True,
        False,
    ]


def test_preferred_start_extends_in_place_when_free() -> None:
    allocator = BlockAllocator(32, max_group_blocks=8)
    allocator.allocate(4)
    allocator.allocate(2, preferred_start=10)  # a hole at 4..9 stays behind
    assert allocator.allocate(3, preferred_start=12) == [Extent(12, 3)]
    allocator.check_integrity()


def test_preferred_start_in_the_middle_of_a_free_run_splits_it() -> None:
    allocator = BlockAllocator(32, max_group_blocks=8)
    assert allocator.allocate(4, preferred_start=10) == [Extent(10, 4)]
    assert allocator.free_runs() == [Extent(0, 10), Extent(14, 18)]
    allocator.check_integrity()


def test_taken_preferred_start_falls_back_to_best_fit() -> None:
    allocator = BlockAllocator(32, max_group_blocks=8)
    allocator.allocate(4)
    assert allocator.allocate(4, preferred_start=2) == [Extent(4, 4)]
    assert allocator.allocate(1, preferred_start=99) == [Extent(8, 1)]
    allocator.check_integrity()


def test_short_free_run_at_preferred_start_is_used_and_the_rest_comes_from_elsewhere() -> None:
    allocator, holes = _pool_with_holes([2, 8])
    extents = allocator.allocate(5, preferred_start=holes[0].start)
    assert extents == [holes[0], Extent(holes[1].start, 3)]
    allocator.check_integrity()


def test_fragmented_pool_gives_several_runs_largest_first_then_best_fit() -> None:
    allocator, holes = _pool_with_holes([3, 5, 2, 4, 1])
    extents = allocator.allocate(10)
    # 5 + 4 cover 9; the last block comes from the 1-block hole, not from a larger one.
    assert extents == [holes[1], holes[3], holes[4]]
    assert allocator.free_runs() == [holes[0], holes[2]]
    allocator.check_integrity()


def test_out_of_blocks_allocates_nothing() -> None:
    allocator, holes = _pool_with_holes([3, 2])
    with pytest.raises(OutOfBlocksError) as caught:
        allocator.allocate(6)
    assert (caught.value.num_requested_blocks, caught.value.num_free_blocks) == (6, 5)
    assert allocator.free_runs() == holes
    assert allocator.num_free_blocks == 5
    allocator.check_integrity()


def test_one_call_never_takes_more_than_a_group() -> None:
    allocator = BlockAllocator(16, max_group_blocks=4)
    with pytest.raises(ValueError, match="1 .. 4"):
        allocator.allocate(5)
    with pytest.raises(ValueError):
        allocator.allocate(0)
    assert allocator.num_free_blocks == 16


def test_free_coalesces_with_both_neighbours() -> None:
    allocator = BlockAllocator(12, max_group_blocks=12)
    first, middle, last = (allocator.allocate(4)[0] for _ in range(3))
    allocator.free([first])
    allocator.free([last])
    assert allocator.free_runs() == [first, last]
    allocator.free([middle])
    assert allocator.free_runs() == [Extent(0, 12)]
    assert allocator.largest_free_run == 12
    allocator.check_integrity()


def test_double_free_raises_and_frees_nothing() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    (extent,) = allocator.allocate(4)
    allocator.free([Extent(0, 2)])
    with pytest.raises(ValueError, match="not allocated"):
        allocator.free([Extent(2, 2), Extent(1, 1)])
    assert allocator.num_free_blocks == 6
    allocator.check_integrity()


def test_freeing_overlapping_extents_in_one_call_raises() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    allocator.allocate(4)
    with pytest.raises(ValueError, match="overlap"):
        allocator.free([Extent(0, 3), Extent(2, 2)])
    assert allocator.num_free_blocks == 4


def test_freeing_outside_the_pool_raises() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    allocator.allocate(8)
    with pytest.raises(ValueError, match="not a run"):
        allocator.free([Extent(6, 4)])
    with pytest.raises(ValueError, match="not a run"):
        allocator.free([Extent(3, 0)])


def test_check_integrity_notices_a_corrupted_free_state() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    allocator.allocate(2)
    allocator._is_allocated[5] = 1  # a free block marked allocated behind the allocator's back
    with pytest.raises(AssertionError):
        allocator.check_integrity()


def test_baseline_hands_out_single_blocks_in_order_from_a_fresh_pool() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8, is_contiguous=False)
    assert allocator.allocate(3) == [Extent(0, 1), Extent(1, 1), Extent(2, 1)]
    assert allocator.allocate(1, preferred_start=7) == [Extent(3, 1)]
    allocator.check_integrity()


def test_baseline_reuses_the_last_freed_block_first() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8, is_contiguous=False)
    allocator.allocate(6)
    allocator.free([Extent(1, 1)])
    allocator.free([Extent(4, 1)])
    assert _blocks(allocator.allocate(3)) == [4, 1, 6]
    allocator.check_integrity()


def test_baseline_is_scattered_after_churn() -> None:
    allocator = BlockAllocator(16, max_group_blocks=8, is_contiguous=False)
    # Four requests grow block by block, interleaved as decoding does; two of them finish.
    owned: list[list[Extent]] = [[] for _ in range(4)]
    for _ in range(4):
        for extents in owned:
            extents.extend(allocator.allocate(1))
    allocator.free(owned[0])
    allocator.free(owned[2])
    assert len(runs_of(_blocks(allocator.allocate(8)))) == 8
    allocator.check_integrity()


def test_baseline_free_runs_and_largest_run_describe_the_free_list() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8, is_contiguous=False)
    allocator.allocate(8)
    allocator.free([Extent(5, 1), Extent(1, 1), Extent(2, 1), Extent(6, 1)])
    assert allocator.free_runs() == [Extent(1, 2), Extent(5, 2)]
    assert allocator.largest_free_run == 2
    allocator.check_integrity()


def test_full_pool_has_no_free_run() -> None:
    for is_contiguous in (True, False):
        allocator = BlockAllocator(4, max_group_blocks=4, is_contiguous=is_contiguous)
        allocator.allocate(4)
        assert allocator.free_runs() == []
        assert allocator.largest_free_run == 0


operations = st.lists(
    st.tuples(st.booleans(), st.integers(1, 12), st.one_of(st.none(), st.integers(0, 40))),
    max_size=40,
)


def _min_runs_to_cover(run_sizes: list[int], num_blocks: int) -> int:
    covered = 0
    for count, size in enumerate(sorted(run_sizes, reverse=True), start=1):
        covered += size
        if covered >= num_blocks:
            return count
    raise AssertionError("not enough free blocks")


@settings(max_examples=120, deadline=None)
@given(is_contiguous=st.booleans(), ops=operations, seed=st.randoms(use_true_random=False))
def test_random_allocate_and_free_keep_the_pool_consistent(is_contiguous, ops, seed) -> None:
    allocator = BlockAllocator(40, max_group_blocks=12, is_contiguous=is_contiguous)
    owned: set[int] = set()
    held: list[list[Extent]] = []
    for is_allocate, num_blocks, preferred_start in ops:
        if is_allocate or not held:
            free_before = set(range(40)) - owned
            run_sizes = [run.num_blocks for run in allocator.free_runs()]
            if num_blocks > len(free_before):
                with pytest.raises(OutOfBlocksError):
                    allocator.allocate(num_blocks, preferred_start=preferred_start)
                assert allocator.num_free_blocks == len(free_before)
                continue
            extents = allocator.allocate(num_blocks, preferred_start=preferred_start)
            block_ids = _blocks(extents)
            assert len(block_ids) == num_blocks
            assert set(block_ids) <= free_before
            if not is_contiguous:
                assert all(extent.num_blocks == 1 for extent in extents)
            elif preferred_start is not None and preferred_start in free_before:
                assert extents[0].start == preferred_start
            else:
                # Fewest pieces the free runs allow: one whenever a run is large enough.
                assert len(extents) == _min_runs_to_cover(run_sizes, num_blocks)
            owned |= set(block_ids)
            held.append(extents)
        else:
            extents = held.pop(seed.randrange(len(held)))
            allocator.free(extents)
            owned -= set(_blocks(extents))
        allocator.check_integrity()
        assert allocator.num_free_blocks + len(owned) == 40
        assert set(_blocks(allocator.free_runs())) == set(range(40)) - owned
