"""Runs of contiguous block ids, and swap plans made of them.

The KV tensor is block-major (`[num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim]`),
so a run of contiguous block ids is one contiguous memory range across all layers and K/V: a
swap costs one copy per run. Everything here is pure data; nothing mutates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Extent(NamedTuple):
    """The blocks `start .. start + num_blocks - 1` of one pool (GPU or host ids, never mixed)."""

    start: int
    num_blocks: int

    @property
    def stop(self) -> int:
        """One past the last block id of the run."""
        return self.start + self.num_blocks


class CopyExtent(NamedTuple):
    """One copy of a swap plan: `num_blocks` blocks from `src_start` on to `dst_start` on.

    Source and destination are in different pools (GPU -> host or host -> GPU), so the two
    starts are ids in two separate id spaces.
    """

    src_start: int
    dst_start: int
    num_blocks: int


def runs_of(block_ids: Sequence[int]) -> list[Extent]:
    """Coalesce an ordered block id list into maximal runs, keeping the order.

    `[3, 4, 5, 9, 10, 2]` -> `[Extent(3, 3), Extent(9, 2), Extent(2, 1)]`. Only ascending
    neighbours join a run: a run maps to one memory range read front to back.
    """
    runs: list[Extent] = []
    run_start = 0
    num_run_blocks = 0
    for block_id in block_ids:
        if num_run_blocks and block_id == run_start + num_run_blocks:
            num_run_blocks += 1
            continue
        if num_run_blocks:
            runs.append(Extent(run_start, num_run_blocks))
        run_start = block_id
        num_run_blocks = 1
    if num_run_blocks:
        runs.append(Extent(run_start, num_run_blocks))
    return runs


def pair_runs(src_block_ids: Sequence[int], dst_block_ids: Sequence[int]) -> list[CopyExtent]:
    """The swap plan that copies `src_block_ids[i]` to `dst_block_ids[i]` for every i.

    Cut into maximal pieces where both sides are contiguous, so each piece is one memcpy:
    a contiguous source paired with a scattered destination still costs one copy per
    destination run.
    """
    if len(src_block_ids) != len(dst_block_ids):
        raise ValueError(
            f"a swap pairs blocks one to one: {len(src_block_ids)} source blocks, "
            f"{len(dst_block_ids)} destination blocks"
        )
    plan: list[CopyExtent] = []
    for src_block_id, dst_block_id in zip(src_block_ids, dst_block_ids, strict=True):
        if plan:
            last = plan[-1]
            if (
                src_block_id == last.src_start + last.num_blocks
                and dst_block_id == last.dst_start + last.num_blocks
            ):
                plan[-1] = CopyExtent(last.src_start, last.dst_start, last.num_blocks + 1)
                continue
        plan.append(CopyExtent(src_block_id, dst_block_id, 1))
    return plan
