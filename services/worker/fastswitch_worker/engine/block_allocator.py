"""Hands out KV blocks of one pool (GPU or host) as runs of contiguous block ids.

Two modes share one interface:

- contiguous (FastSwitch block groups): free space is a set of maximal free runs. Three views of
  the same runs are kept in step: `start -> num_blocks`, `stop -> start` (to find the left
  neighbour when freeing), and a list sorted by `(num_blocks, start)` (the size index, searched
  with bisect). A request takes the best-fitting run (the smallest run at least as large,
  lowest start on ties) and is carved from that run's front, so whatever is left of the run
  starts right after it and the owner can grow in place later. Only when no run is large enough
  does it take several runs, largest first (fewest pieces), with a best fit for the remainder.
  Freeing merges with both neighbours, so no two free runs ever touch.
  Why not a buddy allocator: buddies round every group up to a power of two and only merge
  aligned pairs, so free neighbours can stay apart; exact runs waste nothing and always merge.
  Cost: O(log r) search plus O(r) list shifting for r free runs, and O(k) bitmap work for k
  blocks.
- baseline (vLLM v0): a LIFO stack of single free blocks. After churn consecutive allocations
  come back scattered, which is the behaviour the baseline exists to reproduce.

Both modes keep an `is_allocated` byte per block so that a double free is caught at once.
Not thread-safe: the engine loop owns an allocator; a copy thread never touches it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable

from fastswitch_worker.engine.extents import Extent, runs_of

_FREE = 0
_ALLOCATED = 1


class OutOfBlocksError(Exception):
    """Fewer blocks are free than were asked for; nothing was allocated."""

    def __init__(self, num_requested_blocks: int, num_free_blocks: int) -> None:
        super().__init__(
            f"asked for {num_requested_blocks} blocks, only {num_free_blocks} are free"
        )
        self.num_requested_blocks = num_requested_blocks
        self.num_free_blocks = num_free_blocks


class BlockAllocator:
    """The free/allocated state of `num_blocks` blocks, ids `0 .. num_blocks - 1`.

    `max_group_blocks` caps one `allocate()` call: a caller never takes more than one group at
    once and splits a larger need into several calls, passing the previous call's stop as
    `preferred_start` so the pieces still end up contiguous when the pool allows it
    (`BlockTable` does this, placing the first call with `best_fit_run()` for the whole need).
    It bounds how much one call can grab and keeps "group" a fixed
    unit that both modes share.
    """

    def __init__(self, num_blocks: int, *, max_group_blocks: int, is_contiguous: bool = True):
        if num_blocks < 1:
            raise ValueError(f"a pool needs at least one block, got {num_blocks}")
        if max_group_blocks < 1:
            raise ValueError(f"max_group_blocks must be at least 1, got {max_group_blocks}")
        self._num_blocks = num_blocks
        self._max_group_blocks = max_group_blocks
        self._is_contiguous = is_contiguous
        self._num_free_blocks = num_blocks
        self._is_allocated = bytearray(num_blocks)  # one byte per block: _FREE or _ALLOCATED
        # Contiguous mode: the free runs, three views kept in step (see the module docstring).
        self._run_num_blocks_by_start: dict[int, int] = {}
        self._run_start_by_stop: dict[int, int] = {}
        self._runs_by_size: list[tuple[int, int]] = []  # sorted (num_blocks, start)
        # Baseline mode: free block ids; the top of the stack (the end) is handed out next.
        self._free_block_ids: list[int] = []
        if is_contiguous:
            self._add_run(0, num_blocks)
        else:
            # Reversed so that a fresh pool hands out 0, 1, 2, ...
            self._free_block_ids = list(range(num_blocks - 1, -1, -1))

    @property
    def num_blocks(self) -> int:
        """Blocks in the pool, free or not."""
        return self._num_blocks

    @property
    def num_free_blocks(self) -> int:
        return self._num_free_blocks

    @property
    def max_group_blocks(self) -> int:
        """The most blocks one `allocate()` call may ask for."""
        return self._max_group_blocks

    @property
    def is_contiguous(self) -> bool:
        """True for block groups (FastSwitch), False for the vLLM v0 single-block free list."""
        return self._is_contiguous

    @property
    def largest_free_run(self) -> int:
        """Blocks in the largest run of contiguous free blocks (0 when the pool is full)."""
        if self._is_contiguous:
            return self._runs_by_size[-1][0] if self._runs_by_size else 0
        return max((run.num_blocks for run in self.free_runs()), default=0)

    def free_runs(self) -> list[Extent]:
        """The maximal runs of free blocks in id order, for figures. Does not mutate."""
        if self._is_contiguous:
            return [Extent(start, n) for start, n in sorted(self._run_num_blocks_by_start.items())]
        return runs_of(sorted(self._free_block_ids))

    def is_free(self, block_id: int) -> bool:
        """Whether the block is free (False for ids outside the pool). Does not mutate."""
        return 0 <= block_id < self._num_blocks and self._is_allocated[block_id] == _FREE

    def best_fit_run(self, num_blocks: int) -> Extent | None:
        """The free run `allocate(num_blocks)` would carve from (smallest that holds
        `num_blocks`, lowest start on ties), or None when no run is that large.

        Lets a caller that must split a need into several calls pick the place for all of it
        first. Does not mutate.
        """
        if not self._is_contiguous:
            fitting = [run for run in self.free_runs() if run.num_blocks >= num_blocks]
            return min(fitting, key=lambda run: (run.num_blocks, run.start), default=None)
        index = bisect_left(self._runs_by_size, (num_blocks, -1))
        if index == len(self._runs_by_size):
            return None
        run_num_blocks, run_start = self._runs_by_size[index]
        return Extent(run_start, run_num_blocks)

    def allocate(self, num_blocks: int, *, preferred_start: int | None = None) -> list[Extent]:
        """Take exactly `num_blocks` free blocks. Mutates.

        Contiguous mode: if block `preferred_start` is free, the first extent begins there and
        runs as far as the free run allows (a caller grows its last extent in place this way);
        the rest comes from one best-fitting run, or, under fragmentation, from several runs,
        largest first. Baseline mode ignores `preferred_start` and returns single-block extents
        from the top of the free stack. Extents come in the order they were taken.

        Raises OutOfBlocksError, with nothing allocated, when fewer than `num_blocks` are free,
        and ValueError when `num_blocks` is not in `1 .. max_group_blocks`.
        """
        if not 1 <= num_blocks <= self._max_group_blocks:
            raise ValueError(
                f"one allocation takes 1 .. {self._max_group_blocks} blocks, got {num_blocks}"
            )
        if num_blocks > self._num_free_blocks:
            raise OutOfBlocksError(num_blocks, self._num_free_blocks)
        if not self._is_contiguous:
            block_ids = [self._free_block_ids.pop() for _ in range(num_blocks)]
            for block_id in block_ids:
                self._is_allocated[block_id] = _ALLOCATED
            self._num_free_blocks -= num_blocks
            return [Extent(block_id, 1) for block_id in block_ids]

        extents: list[Extent] = []
        num_missing_blocks = num_blocks
        if preferred_start is not None and self.is_free(preferred_start):
            run_start = self._free_run_start_containing(preferred_start)
            run_stop = run_start + self._run_num_blocks_by_start[run_start]
            taken = Extent(preferred_start, min(num_missing_blocks, run_stop - preferred_start))
            self._carve(run_start, taken)
            extents.append(taken)
            num_missing_blocks -= taken.num_blocks
        while num_missing_blocks:
            # Smallest run that holds everything still missing, else the largest run there is.
            index = bisect_left(self._runs_by_size, (num_missing_blocks, -1))
            if index < len(self._runs_by_size):
                _, run_start = self._runs_by_size[index]
                taken = Extent(run_start, num_missing_blocks)
            else:
                run_num_blocks, run_start = self._runs_by_size[-1]
                taken = Extent(run_start, run_num_blocks)
            self._carve(run_start, taken)
            extents.append(taken)
            num_missing_blocks -= taken.num_blocks
        return extents

    def free(self, extents: Iterable[Extent]) -> None:
        """Return blocks to the pool. Mutates.

        Every block must be allocated and named once; otherwise ValueError and nothing is
        freed (a double free is a bug in the caller's bookkeeping, caught here and not later
        as two requests sharing KV).
        """
        extents = list(extents)
        self._check_freeable(extents)
        for extent in extents:
            self._is_allocated[extent.start : extent.stop] = bytes([_FREE]) * extent.num_blocks
            self._num_free_blocks += extent.num_blocks
            if self._is_contiguous:
                self._add_coalesced(extent)
            else:
                self._free_block_ids.extend(range(extent.start, extent.stop))

    def check_integrity(self) -> None:
        """Assert every invariant of the free state. Does not mutate; O(num_blocks)."""
        assert 0 <= self._num_free_blocks <= self._num_blocks
        assert self._is_allocated.count(_FREE) == self._num_free_blocks
        assert self._is_allocated.count(_ALLOCATED) == self._num_blocks - self._num_free_blocks
        if not self._is_contiguous:
            assert len(set(self._free_block_ids)) == len(self._free_block_ids)
            assert len(self._free_block_ids) == self._num_free_blocks
            for block_id in self._free_block_ids:
                assert 0 <= block_id < self._num_blocks
                assert self._is_allocated[block_id] == _FREE
            return
        runs = self.free_runs()
        previous_stop = -1
        for run in runs:
            # Strictly after the previous stop: no overlap, and no two runs touch (maximal).
            assert run.num_blocks >= 1 and run.start > previous_stop, (run, previous_stop)
            assert run.stop <= self._num_blocks, run
            assert self._is_allocated.find(_ALLOCATED, run.start, run.stop) == -1, run
            assert self._run_start_by_stop[run.stop] == run.start, run
            previous_stop = run.stop
        assert sum(run.num_blocks for run in runs) == self._num_free_blocks
        assert len(self._run_start_by_stop) == len(runs)
        assert self._runs_by_size == sorted((run.num_blocks, run.start) for run in runs)

    def _free_run_start_containing(self, block_id: int) -> int:
        # Free runs are maximal, so the run begins right after the last allocated block.
        return self._is_allocated.rfind(_ALLOCATED, 0, block_id) + 1

    def _carve(self, run_start: int, taken: Extent) -> None:
        """Allocate `taken`, which lies inside the free run at `run_start`; keep the rest free."""
        run_stop = run_start + self._run_num_blocks_by_start[run_start]
        assert run_start <= taken.start and taken.stop <= run_stop, (run_start, taken)
        self._remove_run(run_start)
        if taken.start > run_start:
            self._add_run(run_start, taken.start - run_start)
        if run_stop > taken.stop:
            self._add_run(taken.stop, run_stop - taken.stop)
        self._is_allocated[taken.start : taken.stop] = bytes([_ALLOCATED]) * taken.num_blocks
        self._num_free_blocks -= taken.num_blocks

    def _add_coalesced(self, extent: Extent) -> None:
        start, stop = extent.start, extent.stop
        left_start = self._run_start_by_stop.get(start)
        if left_start is not None:
            self._remove_run(left_start)
            start = left_start
        right_num_blocks = self._run_num_blocks_by_start.get(stop)
        if right_num_blocks is not None:
            self._remove_run(stop)
            stop += right_num_blocks
        self._add_run(start, stop - start)

    def _add_run(self, start: int, num_blocks: int) -> None:
        self._run_num_blocks_by_start[start] = num_blocks
        self._run_start_by_stop[start + num_blocks] = start
        insort(self._runs_by_size, (num_blocks, start))

    def _remove_run(self, start: int) -> None:
        num_blocks = self._run_num_blocks_by_start.pop(start)
        del self._run_start_by_stop[start + num_blocks]
        index = bisect_left(self._runs_by_size, (num_blocks, start))
        del self._runs_by_size[index]

    def _check_freeable(self, extents: list[Extent]) -> None:
        ordered = sorted(extents)
        for extent in ordered:
            if extent.num_blocks < 1 or extent.start < 0 or extent.stop > self._num_blocks:
                raise ValueError(f"{extent} is not a run of blocks in a pool of {self._num_blocks}")
            if self._is_allocated.find(_FREE, extent.start, extent.stop) != -1:
                raise ValueError(f"{extent} holds a block that is not allocated (double free?)")
        for before, after in zip(ordered, ordered[1:], strict=False):
            if after.start < before.stop:
                raise ValueError(f"{before} and {after} overlap: a block would be freed twice")
