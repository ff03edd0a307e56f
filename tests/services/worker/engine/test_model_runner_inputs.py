"""Batch preparation is vectorised and gives exactly the per-token construction's tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastswitch_worker.engine.attention_metadata import (
    AttentionMetadata,
    slot_mapping_of,
    token_positions,
)
from fastswitch_worker.engine.block_allocator import BlockAllocator
from fastswitch_worker.engine.block_table import BlockTable
from fastswitch_worker.engine.model_runner import new_token_ids, prepare_inputs
from fastswitch_worker.engine.scheduler_output import ScheduledChunk
from fastswitch_worker.engine.sequence import Request

BLOCK_SIZE = 4


def request_with_blocks(request_id: str, num_prompt: int, num_output: int, num_computed: int,
                        allocator: BlockAllocator, *, is_groups: bool) -> Request:
    request = Request(request_id, list(range(100, 100 + num_prompt)))
    request.output_token_ids = list(range(500, 500 + num_output))
    request.num_computed_tokens = num_computed
    request.gpu_table = BlockTable(allocator, BLOCK_SIZE,
                                   max_group_blocks=4 if is_groups else 1)
    request.gpu_table.ensure_capacity(request.num_tokens)
    return request


def per_token_reference(chunks: tuple[ScheduledChunk, ...]) -> dict[str, list[int]]:
    """The v0.1 construction: a Python loop over every new token."""
    ids, positions, slots, sample_rows = [], [], [], []
    for chunk in chunks:
        request = chunk.request
        start = request.num_computed_tokens
        stop = start + chunk.num_new_tokens
        block_ids = request.gpu_table.block_ids()
        ids += request.all_token_ids[start:stop]
        positions += range(start, stop)
        slots += [block_ids[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE
                  for p in range(start, stop)]
        if chunk.is_sampling:
            sample_rows.append(len(ids) - 1)
    return {"ids": ids, "positions": positions, "slots": slots, "sample_rows": sample_rows}


@pytest.mark.parametrize("is_groups", [True, False])
def test_prepare_inputs_equals_the_per_token_construction(is_groups: bool) -> None:
    allocator = BlockAllocator(64, max_group_blocks=4)
    # A first chunk, a chunk straddling prompt and output (recompute after preemption),
    # decodes at block boundaries and inside a block, and a one-token non-final chunk.
    specs = [(10, 0, 0, 6), (7, 5, 3, 9), (5, 3, 7, 1), (9, 0, 8, 1), (6, 2, 4, 3), (8, 0, 2, 1)]
    chunks = tuple(
        ScheduledChunk(request_with_blocks(f"r{i}", p, o, c, allocator, is_groups=is_groups), n)
        for i, (p, o, c, n) in enumerate(specs))
    expected = per_token_reference(chunks)
    inputs = prepare_inputs(chunks, BLOCK_SIZE, torch.device("cpu"))
    assert inputs.input_ids.tolist() == expected["ids"]
    assert inputs.positions.tolist() == expected["positions"]
    assert inputs.attn.slot_mapping.tolist() == expected["slots"]
    assert list(inputs.sample_rows) == expected["sample_rows"]
    assert list(inputs.sample_chunk_indices) == [
        i for i, chunk in enumerate(chunks) if chunk.is_sampling]
    assert inputs.attn.context_lens.tolist() == [c.request.num_computed_tokens + c.num_new_tokens
                                                 for c in chunks]
    for row, chunk in enumerate(chunks):
        num_blocks = int(inputs.attn.num_table_blocks[row])
        assert inputs.attn.block_tables[row, :num_blocks].tolist() == \
            chunk.request.gpu_table.block_ids()[:num_blocks]


@pytest.mark.parametrize(("num_output", "start", "stop"),
                         [(0, 0, 5), (4, 5, 9), (4, 3, 8), (4, 8, 9), (3, 0, 8)])
def test_new_token_ids_slice_the_history_without_concatenating_it(
        num_output: int, start: int, stop: int) -> None:
    request = Request("r", [1, 2, 3, 4, 5])
    request.output_token_ids = [6, 7, 8, 9][:num_output]
    assert new_token_ids(request, start, stop) == request.all_token_ids[start:stop]


def test_positions_and_slots_of_a_flattened_batch() -> None:
    query_start_locs = np.array([0, 3, 4, 6])
    context_lens = np.array([3, 9, 5])
    positions = token_positions(query_start_locs, context_lens)
    assert positions.tolist() == [0, 1, 2, 8, 3, 4]
    tables = np.array([[7, 0, 0], [2, 5, 1], [3, 6, 0]])
    slots = slot_mapping_of(tables, query_start_locs, positions, BLOCK_SIZE)
    assert slots.tolist() == [28, 29, 30, 1 * 4 + 0, 3 * 4 + 3, 6 * 4 + 0]


def test_metadata_accepts_padded_tables_and_rejects_a_short_one() -> None:
    attn = AttentionMetadata(slot_mapping=torch.zeros(2, dtype=torch.int64),
                             query_start_locs=(0, 1, 2), context_lens=(5, 9),
                             block_tables=(torch.tensor([3, 4]), [1, 2, 6]))
    assert attn.block_tables.tolist() == [[3, 4, 0], [1, 2, 6]]
    assert attn.is_all_decode
    assert attn.check_block_tables(BLOCK_SIZE).tolist() == [2, 3]
    with pytest.raises(ValueError, match="seq 0: block table has 2 blocks, context_len 5 needs 3"):
        attn.check_block_tables(2)
