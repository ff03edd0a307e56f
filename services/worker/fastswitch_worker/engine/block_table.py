"""One request's KV blocks in one pool (GPU or host), and how the table grows.

Logical block i of the request holds tokens `i * block_size .. (i + 1) * block_size - 1` and
lives in physical block `block_ids()[i]`. The table is stored as coalesced extents, so a swap of
the whole request is one copy per extent.

Growth in block-group mode reserves ahead: the first allocation is sized to the need (the
prompt), every later one reserves a group as large as the table already is (doubling), capped
at `max_group_blocks`, and asks for it right after the table's last block so the table stays a
single extent for as long as the pool allows. Doubling keeps the number of extents logarithmic
in the request length until the cap, then linear in `num_blocks / max_group_blocks`. Reserved
blocks beyond the need can be given back with `truncate()`, e.g. before a swap-out so only used
blocks are copied. Baseline mode (vLLM v0) takes exactly the blocks needed, one at a time.
"""

from __future__ import annotations

from fastswitch_worker.engine.block_allocator import BlockAllocator, OutOfBlocksError
from fastswitch_worker.engine.extents import Extent


class BlockTable:
    """The blocks one request owns in one pool, in logical order.

    Not thread-safe: used by the engine loop only, like the allocator it draws from.
    """

    def __init__(
        self,
        allocator: BlockAllocator,
        block_size: int,
        *,
        min_group_blocks: int = 1,
        max_group_blocks: int,
    ) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be at least 1, got {block_size}")
        if not 1 <= min_group_blocks <= max_group_blocks:
            raise ValueError(
                f"need 1 <= min_group_blocks <= max_group_blocks, "
                f"got {min_group_blocks} and {max_group_blocks}"
            )
        self._allocator = allocator
        self._block_size = block_size
        self._min_group_blocks = min_group_blocks
        self._max_group_blocks = max_group_blocks
        self._extents: list[Extent] = []  # coalesced: no extent starts at its predecessor's stop
        self._num_blocks = 0

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self._block_size

    @property
    def num_blocks(self) -> int:
        """Blocks the table owns, used or reserved."""
        return self._num_blocks

    @property
    def num_tokens_capacity(self) -> int:
        """Tokens the owned blocks can hold."""
        return self._num_blocks * self._block_size

    def block_ids(self) -> list[int]:
        """Physical block ids in logical order. Does not mutate."""
        return [
            block_id for extent in self._extents for block_id in range(extent.start, extent.stop)
        ]

    def extents(self) -> list[Extent]:
        """The coalesced runs of `block_ids()`, in logical order. Does not mutate."""
        return list(self._extents)

    def num_reserved_unused_blocks(self, num_tokens: int) -> int:
        """Owned blocks beyond those `num_tokens` tokens need (reserved but unused)."""
        num_needed_blocks = self._num_blocks_for(num_tokens)
        if num_needed_blocks > self._num_blocks:
            raise ValueError(
                f"{num_tokens} tokens need {num_needed_blocks} blocks, the table owns "
                f"{self._num_blocks}"
            )
        return self._num_blocks - num_needed_blocks

    def ensure_capacity(self, num_tokens: int) -> list[Extent]:
        """Grow the table until it holds `num_tokens` tokens. Mutates table and allocator.

        Returns the newly allocated blocks as coalesced extents in logical order (empty if the
        table was large enough). When the pool cannot give the whole reservation it takes
        exactly what is needed, so it never refuses while enough blocks are free. Raises
        OutOfBlocksError, with nothing changed, when fewer blocks are free than needed.
        """
        num_missing_blocks = self._num_blocks_for(num_tokens) - self._num_blocks
        if num_missing_blocks <= 0:
            return []
        num_free_blocks = self._allocator.num_free_blocks
        if num_missing_blocks > num_free_blocks:
            raise OutOfBlocksError(num_missing_blocks, num_free_blocks)
        num_wanted_blocks = self._num_blocks_to_allocate(num_missing_blocks)
        if num_wanted_blocks > num_free_blocks:
            num_wanted_blocks = num_missing_blocks
        new_extents: list[Extent] = []
        num_left_blocks = num_wanted_blocks
        preferred_start = self._start_for(num_wanted_blocks)
        while num_left_blocks:
            # The allocator hands out at most one of its groups per call; chaining each call
            # onto the table's current end keeps the pieces contiguous where the pool allows.
            num_call_blocks = min(num_left_blocks, self._allocator.max_group_blocks)
            for extent in self._allocator.allocate(
                num_call_blocks, preferred_start=preferred_start
            ):
                _append_coalesced(self._extents, extent)
                _append_coalesced(new_extents, extent)
            self._num_blocks += num_call_blocks
            num_left_blocks -= num_call_blocks
            preferred_start = self._extents[-1].stop
        return new_extents

    def truncate(self, num_tokens: int) -> list[Extent]:
        """Free the blocks beyond those `num_tokens` tokens need. Mutates table and allocator.

        Returns the freed extents in logical order (empty if nothing was beyond).
        """
        num_excess_blocks = self._num_blocks - self._num_blocks_for(num_tokens)
        freed_tail: list[Extent] = []  # built back to front
        while num_excess_blocks > 0:
            last = self._extents.pop()
            if last.num_blocks > num_excess_blocks:
                num_kept_blocks = last.num_blocks - num_excess_blocks
                self._extents.append(Extent(last.start, num_kept_blocks))
                last = Extent(last.start + num_kept_blocks, num_excess_blocks)
            freed_tail.append(last)
            num_excess_blocks -= last.num_blocks
            self._num_blocks -= last.num_blocks
        freed = freed_tail[::-1]
        self._allocator.free(freed)
        return freed

    def free_all(self) -> None:
        """Return every block to the allocator; the table is empty after. Mutates both."""
        self._allocator.free(self._extents)
        self._extents = []
        self._num_blocks = 0

    def _start_for(self, num_wanted_blocks: int) -> int | None:
        """Where the growth should begin: the table's end when that block is free, else, when
        the growth spans several allocator calls, the run that can hold all of it (each call
        alone would best-fit one group and could land where the next one cannot follow)."""
        end = self._extents[-1].stop if self._extents else None
        if end is not None and self._allocator.is_free(end):
            return end
        if num_wanted_blocks > self._allocator.max_group_blocks and self._allocator.is_contiguous:
            run = self._allocator.best_fit_run(num_wanted_blocks)
            if run is not None:
                return run.start
        return end

    def _num_blocks_for(self, num_tokens: int) -> int:
        if num_tokens < 0:
            raise ValueError(f"num_tokens must be non-negative, got {num_tokens}")
        return -(-num_tokens // self._block_size)

    def _num_blocks_to_allocate(self, num_missing_blocks: int) -> int:
        """Blocks one growth takes when the pool has room: the need plus any reservation."""
        if not self._allocator.is_contiguous:
            return num_missing_blocks
        if not self._num_blocks:
            # First allocation: sized to the need (the prompt), not reserved ahead.
            return max(num_missing_blocks, self._min_group_blocks)
        num_group_blocks = min(
            max(self._num_blocks, self._min_group_blocks), self._max_group_blocks
        )
        return max(num_missing_blocks, num_group_blocks)


def _append_coalesced(extents: list[Extent], extent: Extent) -> None:
    """Append `extent`, merging it into the last one when it continues it. Mutates `extents`."""
    if extents and extents[-1].stop == extent.start:
        last = extents.pop()
        extent = Extent(last.start, last.num_blocks + extent.num_blocks)
    extents.append(extent)
