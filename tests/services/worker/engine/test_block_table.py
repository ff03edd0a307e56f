"""Per-request block tables: group growth, in-place extension, truncation, both modes."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fastswitch_worker.engine.block_allocator import BlockAllocator, OutOfBlocksError
from fastswitch_worker.engine.block_table import BlockTable
from fastswitch_worker.engine.extents import CopyExtent, Extent, pair_runs, runs_of

BLOCK_SIZE = 4


def _table(allocator: BlockAllocator, max_group_blocks: int = 8, **kwargs) -> BlockTable:
    return BlockTable(allocator, BLOCK_SIZE, max_group_blocks=max_group_blocks, **kwargs)


def test_first_allocation_is_sized_to_the_prompt() -> None:
    table = _table(BlockAllocator(64, max_group_blocks=16))
    assert table.ensure_capacity(10) == [Extent(0, 3)]
    assert (table.num_blocks, table.num_tokens_capacity) == (3, 12)
    assert table.num_reserved_unused_blocks(10) == 0


def test_growth_doubles_in_place_as_one_extent_until_the_cap() -> None:
    allocator = BlockAllocator(64, max_group_blocks=16)
    table = _table(allocator, max_group_blocks=8)
    num_new_blocks_per_growth = []
    for num_tokens in range(1, 97):
        new_extents = table.ensure_capacity(num_tokens)
        if new_extents:
            num_new_blocks_per_growth.append(sum(e.num_blocks for e in new_extents))
        allocator.check_integrity()
    assert num_new_blocks_per_growth == [1, 1, 2, 4, 8, 8]
    assert table.extents() == [Extent(0, 24)]
    assert table.block_ids() == list(range(24))


def test_growth_reserves_ahead_and_reports_the_unused_part() -> None:
    table = _table(BlockAllocator(64, max_group_blocks=16))
    table.ensure_capacity(12)
    assert table.ensure_capacity(13) == [Extent(3, 3)]
    assert table.num_reserved_unused_blocks(13) == 2
    assert table.ensure_capacity(24) == []
    with pytest.raises(ValueError, match="owns 6"):
        table.num_reserved_unused_blocks(25)


def test_min_group_blocks_is_a_floor_for_every_allocation() -> None:
    table = _table(BlockAllocator(64, max_group_blocks=16), min_group_blocks=4)
    assert table.ensure_capacity(1) == [Extent(0, 4)]
    assert table.ensure_capacity(17) == [Extent(4, 4)]


def test_need_larger_than_an_allocator_group_is_chained_into_one_extent() -> None:
    allocator = BlockAllocator(32, max_group_blocks=4)
    table = _table(allocator)
    assert table.ensure_capacity(40) == [Extent(0, 10)]
    allocator.check_integrity()


def test_need_spanning_several_allocator_calls_lands_in_a_run_that_holds_all_of_it() -> None:
    allocator = BlockAllocator(32, max_group_blocks=4)
    for _ in range(8):
        allocator.allocate(4)
    allocator.free([Extent(1, 4), Extent(10, 4), Extent(14, 4), Extent(18, 4)])
    table = _table(allocator)
    # One call at a time would best-fit the first 4 blocks into 1..4 and split the table.
    assert table.ensure_capacity(40) == [Extent(10, 10)]
    allocator.check_integrity()


def test_growth_spanning_several_allocator_calls_still_extends_in_place_first() -> None:
    allocator = BlockAllocator(32, max_group_blocks=4)
    table = _table(allocator)
    table.ensure_capacity(8)
    for num_blocks in (4, 4, 4, 4, 4, 4, 4, 2):  # everything else, then two holes
        allocator.allocate(num_blocks)
    allocator.free([Extent(2, 18), Extent(21, 10)])
    assert allocator.best_fit_run(10) == Extent(21, 10)  # a tighter fit than the run at the end
    assert table.ensure_capacity(48) == [Extent(2, 10)]
    assert table.extents() == [Extent(0, 12)]
    allocator.check_integrity()


def test_interleaved_decoding_keeps_few_extents_with_groups_and_one_per_block_in_baseline() -> None:
    num_extents_by_mode = {}
    for is_contiguous in (True, False):
        allocator = BlockAllocator(64, max_group_blocks=16, is_contiguous=is_contiguous)
        first, second = _table(allocator), _table(allocator)
        for num_tokens in range(1, 129):
            first.ensure_capacity(num_tokens)
            second.ensure_capacity(num_tokens)
        allocator.check_integrity()
        assert first.num_blocks == second.num_blocks == 32
        num_extents_by_mode[is_contiguous] = len(first.extents())
    # Groups of 1, 1, 2, 4, 8, 8, 8 blocks, each cut off by the other table's group.
    assert num_extents_by_mode == {True: 7, False: 32}


def test_growth_falls_back_to_several_extents_under_fragmentation() -> None:
    allocator = BlockAllocator(16, max_group_blocks=16)
    allocator.allocate(16)
    allocator.free([Extent(1, 3), Extent(6, 2), Extent(10, 4)])
    table = _table(allocator)
    assert table.ensure_capacity(36) == [Extent(10, 4), Extent(1, 3), Extent(6, 2)]
    assert table.block_ids() == [10, 11, 12, 13, 1, 2, 3, 6, 7]
    assert allocator.free_runs() == []
    allocator.check_integrity()


def test_growth_takes_exactly_the_need_when_the_pool_cannot_give_a_group() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    _table(allocator).ensure_capacity(20)  # another request holds 5 blocks
    table = _table(allocator)
    table.ensure_capacity(8)
    assert table.ensure_capacity(9) == [Extent(7, 1)]  # a group would be 2; 1 block is free
    assert table.num_reserved_unused_blocks(9) == 0
    assert allocator.num_free_blocks == 0


def test_out_of_blocks_leaves_table_and_pool_unchanged() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    other = _table(allocator)
    other.ensure_capacity(20)
    table = _table(allocator)
    table.ensure_capacity(8)
    with pytest.raises(OutOfBlocksError):
        table.ensure_capacity(17)
    assert table.extents() == [Extent(5, 2)]
    assert allocator.free_runs() == [Extent(7, 1)]
    allocator.check_integrity()


def test_truncate_frees_the_tail_and_the_pool_coalesces_it() -> None:
    allocator = BlockAllocator(32, max_group_blocks=16)
    table = _table(allocator)
    table.ensure_capacity(40)
    assert table.truncate(22) == [Extent(6, 4)]
    assert table.extents() == [Extent(0, 6)]
    assert allocator.free_runs() == [Extent(6, 26)]
    assert table.truncate(24) == []
    allocator.check_integrity()


def test_truncate_across_extents_returns_them_in_logical_order() -> None:
    allocator = BlockAllocator(16, max_group_blocks=16)
    table, other = _table(allocator), _table(allocator)
    table.ensure_capacity(12)
    other.ensure_capacity(8)
    table.ensure_capacity(13)
    assert table.extents() == [Extent(0, 3), Extent(5, 3)]
    assert table.truncate(5) == [Extent(2, 1), Extent(5, 3)]
    assert table.block_ids() == [0, 1]
    assert allocator.free_runs() == [Extent(2, 1), Extent(5, 11)]
    allocator.check_integrity()


def test_free_all_returns_every_block() -> None:
    allocator = BlockAllocator(16, max_group_blocks=16, is_contiguous=False)
    table = _table(allocator)
    table.ensure_capacity(30)
    table.free_all()
    assert (table.num_blocks, table.block_ids(), table.extents()) == (0, [], [])
    assert allocator.num_free_blocks == 16
    allocator.check_integrity()


def test_baseline_takes_exactly_the_needed_blocks_one_by_one() -> None:
    allocator = BlockAllocator(16, max_group_blocks=16, is_contiguous=False)
    table = _table(allocator)
    assert table.ensure_capacity(13) == [Extent(0, 4)]
    assert table.ensure_capacity(17) == [Extent(4, 1)]
    assert table.num_reserved_unused_blocks(17) == 0


def test_swap_to_a_host_table_is_one_copy_per_group_and_one_per_block_in_baseline() -> None:
    copies_by_mode = {}
    for is_contiguous in (True, False):
        gpu = BlockAllocator(32, max_group_blocks=16, is_contiguous=is_contiguous)
        host = BlockAllocator(32, max_group_blocks=16, is_contiguous=is_contiguous)
        running, preempted = _table(gpu), _table(gpu)
        for num_tokens in range(1, 49):
            running.ensure_capacity(num_tokens)
            preempted.ensure_capacity(num_tokens)
        preempted.truncate(48)  # only used blocks get copied
        host_table = _table(host)
        host_table.ensure_capacity(48)
        copies_by_mode[is_contiguous] = pair_runs(preempted.block_ids(), host_table.block_ids())
    assert len(copies_by_mode[False]) == 12
    assert len(copies_by_mode[True]) == 5  # groups of 1, 1, 2, 4, 4 blocks
    assert copies_by_mode[True][-1] == CopyExtent(src_start=24, dst_start=8, num_blocks=4)


def test_table_arguments_are_validated() -> None:
    allocator = BlockAllocator(8, max_group_blocks=8)
    with pytest.raises(ValueError):
        BlockTable(allocator, 0, max_group_blocks=4)
    with pytest.raises(ValueError):
        BlockTable(allocator, 4, min_group_blocks=5, max_group_blocks=4)
    with pytest.raises(ValueError):
        _table(allocator).ensure_capacity(-1)


NUM_TABLES = 3


class TablesSharingAPool(RuleBasedStateMachine):
    """Several requests grow, shrink and finish in one pool; both modes; integrity throughout."""

    @initialize(
        is_contiguous=st.booleans(),
        num_pool_blocks=st.integers(8, 64),
        allocator_group_blocks=st.integers(1, 16),
        min_group_blocks=st.integers(1, 3),
        max_group_blocks=st.integers(3, 12),
    )
    def make_pool(
        self,
        is_contiguous,
        num_pool_blocks,
        allocator_group_blocks,
        min_group_blocks,
        max_group_blocks,
    ) -> None:
        self.allocator = BlockAllocator(
            num_pool_blocks, max_group_blocks=allocator_group_blocks, is_contiguous=is_contiguous
        )
        self.tables = [
            _table(self.allocator, max_group_blocks, min_group_blocks=min_group_blocks)
            for _ in range(NUM_TABLES)
        ]
        self.num_tokens = [0] * NUM_TABLES

    @rule(index=st.integers(0, NUM_TABLES - 1), num_new_tokens=st.integers(1, 40))
    def grow(self, index: int, num_new_tokens: int) -> None:
        table = self.tables[index]
        num_tokens = self.num_tokens[index] + num_new_tokens
        block_ids_before = table.block_ids()
        free_runs_before = self.allocator.free_runs()
        num_missing_blocks = -(-num_tokens // BLOCK_SIZE) - table.num_blocks
        if num_missing_blocks > self.allocator.num_free_blocks:
            with pytest.raises(OutOfBlocksError):
                table.ensure_capacity(num_tokens)
            assert table.block_ids() == block_ids_before
            assert self.allocator.free_runs() == free_runs_before
            return
        is_end_free = bool(block_ids_before) and any(
            run.start == block_ids_before[-1] + 1 for run in free_runs_before
        )
        new_extents = table.ensure_capacity(num_tokens)
        new_block_ids = [b for e in new_extents for b in range(e.start, e.stop)]
        assert table.block_ids() == block_ids_before + new_block_ids
        assert table.num_tokens_capacity >= num_tokens
        if self.allocator.is_contiguous and new_extents and is_end_free:
            assert new_extents[0].start == block_ids_before[-1] + 1  # grew in place
        if not self.allocator.is_contiguous:
            assert table.num_reserved_unused_blocks(num_tokens) == 0
        self.num_tokens[index] = num_tokens

    @rule(index=st.integers(0, NUM_TABLES - 1), data=st.data())
    def truncate(self, index: int, data) -> None:
        table = self.tables[index]
        num_tokens = data.draw(st.integers(0, self.num_tokens[index]))
        block_ids_before = table.block_ids()
        freed = table.truncate(num_tokens)
        num_kept_blocks = -(-num_tokens // BLOCK_SIZE)
        assert table.block_ids() == block_ids_before[:num_kept_blocks]
        assert [b for e in freed for b in range(e.start, e.stop)] == block_ids_before[
            num_kept_blocks:
        ]
        assert table.num_reserved_unused_blocks(num_tokens) == 0
        self.num_tokens[index] = num_tokens

    @precondition(lambda self: any(self.num_tokens))
    @rule(index=st.integers(0, NUM_TABLES - 1))
    def finish(self, index: int) -> None:
        self.tables[index].free_all()
        self.num_tokens[index] = 0

    @invariant()
    def pool_and_tables_agree(self) -> None:
        self.allocator.check_integrity()
        owned: set[int] = set()
        for table, num_tokens in zip(self.tables, self.num_tokens, strict=True):
            block_ids = table.block_ids()
            assert table.extents() == runs_of(block_ids)
            assert table.num_blocks == len(block_ids)
            assert table.num_tokens_capacity >= num_tokens
            assert owned.isdisjoint(block_ids), "a block is owned by two tables"
            owned.update(block_ids)
        free_block_ids = {
            b for run in self.allocator.free_runs() for b in range(run.start, run.stop)
        }
        assert owned.isdisjoint(free_block_ids)
        assert len(owned) + self.allocator.num_free_blocks == self.allocator.num_blocks


TablesSharingAPool.TestCase.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None
)
test_tables_sharing_a_pool = TablesSharingAPool.TestCase
