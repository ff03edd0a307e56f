"""write_kv and paged_attention on the block-major cache, against dense attention."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastswitch_worker.engine.attention import (
    AttentionMetadata,
    decode_batches,
    paged_attention,
    plan_attention,
    write_kv,
)

NUM_BLOCKS, NUM_LAYERS, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM, NUM_HEADS = 12, 3, 4, 2, 8, 6


def empty_cache(num_blocks: int = NUM_BLOCKS) -> torch.Tensor:
    return torch.zeros(num_blocks, NUM_LAYERS, 2, BLOCK_SIZE, NUM_KV_HEADS, HEAD_DIM)


def slots_of(block_ids: list[int], positions: range) -> list[int]:
    return [block_ids[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE for p in positions]


def dense_causal_attention(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    """Reference for one sequence: query [n, heads, dim] at the last n of ctx positions."""
    num_new, context_len = query.shape[0], keys.shape[0]
    group = query.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(group, dim=1)  # [ctx, heads, dim]
    values = values.repeat_interleave(group, dim=1)
    scores = torch.einsum("qhd,khd->hqk", query, keys) / math.sqrt(query.shape[-1])
    query_positions = torch.arange(context_len - num_new, context_len)[:, None]
    scores = scores.masked_fill(torch.arange(context_len)[None, :] > query_positions, -torch.inf)
    return torch.einsum("hqk,khd->qhd", scores.softmax(-1), values)


def test_write_kv_fills_exactly_the_mapped_slots_of_one_layer() -> None:
    kv_cache = empty_cache()
    key = torch.randn(5, NUM_KV_HEADS, HEAD_DIM)
    value = torch.randn(5, NUM_KV_HEADS, HEAD_DIM)
    slots = torch.tensor([9 * 4 + 3, 2 * 4 + 0, 2 * 4 + 1, 7 * 4 + 2, 0])
    write_kv(kv_cache, 1, key, value, slots)
    for row, slot in enumerate(slots.tolist()):
        block_id, offset = divmod(slot, BLOCK_SIZE)
        assert torch.equal(kv_cache[block_id, 1, 0, offset], key[row])
        assert torch.equal(kv_cache[block_id, 1, 1, offset], value[row])
    assert kv_cache.ne(0).sum() == 2 * key.numel()  # nothing else, no other layer


def test_block_holds_all_layers_so_a_block_run_is_one_memory_range() -> None:
    kv_cache = empty_cache()
    start, end = kv_cache[3].data_ptr(), kv_cache[5].data_ptr()
    assert end - start == 2 * kv_cache[0].numel() * kv_cache.element_size()
    assert kv_cache[3:5].is_contiguous()


def test_paged_attention_matches_dense_for_prefill_chunk_and_decodes_with_gqa() -> None:
    torch.manual_seed(0)
    kv_cache = empty_cache()
    layer_idx = 2
    # seq 0: chunk of 5 new tokens after 6 cached; seq 1: decode at 9; seq 2: decode at 3;
    # seq 3: full prefill of 4 (one whole block).
    tables = [[10, 3, 6], [1, 11, 0], [8], [4]]
    context_lens = [11, 9, 3, 4]
    query_lens = [5, 1, 1, 4]
    full_keys = [torch.randn(n, NUM_KV_HEADS, HEAD_DIM) for n in context_lens]
    full_values = [torch.randn(n, NUM_KV_HEADS, HEAD_DIM) for n in context_lens]
    for table, keys, values in zip(tables, full_keys, full_values, strict=True):
        slots = torch.tensor(slots_of(table, range(keys.shape[0])))
        write_kv(kv_cache, layer_idx, keys, values, slots)
    query_start_locs = [0]
    for query_len in query_lens:
        query_start_locs.append(query_start_locs[-1] + query_len)
    query = torch.randn(query_start_locs[-1], NUM_HEADS, HEAD_DIM)
    attn = AttentionMetadata(
        slot_mapping=torch.zeros(query_start_locs[-1], dtype=torch.int64),  # unused here
        query_start_locs=tuple(query_start_locs),
        context_lens=tuple(context_lens),
        block_tables=tuple(torch.tensor(t) for t in tables),
    )
    plan = plan_attention(attn, kv_cache)
    assert len(plan.chunks) == 2 and len(plan.decodes) == 1
    output = paged_attention(query, kv_cache, layer_idx, plan)
    for i in range(4):
        rows = slice(query_start_locs[i], query_start_locs[i + 1])
        expected = dense_causal_attention(query[rows], full_keys[i], full_values[i])
        torch.testing.assert_close(output[rows], expected, atol=1e-5, rtol=1e-5)


def test_decodes_batch_by_context_length_so_short_ones_do_not_pad_to_long_ones() -> None:
    # Longest first; 300 pads to 600 by more than a quarter and 64 tokens: its own batch;
    # 60 pads to 100 by 40 tokens only: it stays.
    lens = np.array([600, 60, 580, 100, 90, 300])
    assert [b.tolist() for b in decode_batches(lens)] == [[0, 2], [5], [3, 4, 1]]
    assert [b.tolist() for b in decode_batches(np.array([40, 38, 10, 45]))] == [[0, 1, 2, 3]]
    assert [b.tolist() for b in decode_batches(np.array([500, 420, 400]))] == [[0, 1, 2]]
    assert decode_batches(np.array([], dtype=np.int64)) == []


@pytest.mark.parametrize("with_prefill_chunk", [False, True])
def test_decodes_of_very_different_lengths_match_dense_attention(with_prefill_chunk: bool) -> None:
    torch.manual_seed(1)
    kv_cache = empty_cache(num_blocks=120)
    layer_idx = 1
    context_lens = [150, 5, 40, 140, 3] + ([12] if with_prefill_chunk else [])
    query_lens = [1, 1, 1, 1, 1] + ([8] if with_prefill_chunk else [])
    free_blocks = iter(torch.randperm(120).tolist())  # scattered, as a real pool leaves them
    tables = [[next(free_blocks) for _ in range(-(-n // BLOCK_SIZE))] for n in context_lens]
    full_keys = [torch.randn(n, NUM_KV_HEADS, HEAD_DIM) for n in context_lens]
    full_values = [torch.randn(n, NUM_KV_HEADS, HEAD_DIM) for n in context_lens]
    for table, keys, values in zip(tables, full_keys, full_values, strict=True):
        write_kv(kv_cache, layer_idx, keys, values, torch.tensor(slots_of(table, range(keys.shape[0]))))
    query_start_locs = [0]
    for query_len in query_lens:
        query_start_locs.append(query_start_locs[-1] + query_len)
    query = torch.randn(query_start_locs[-1], NUM_HEADS, HEAD_DIM)
    attn = AttentionMetadata(
        slot_mapping=torch.zeros(query_start_locs[-1], dtype=torch.int64),
        query_start_locs=tuple(query_start_locs), context_lens=tuple(context_lens),
        block_tables=tuple(torch.tensor(t) for t in tables))
    plan = plan_attention(attn, kv_cache)
    assert len(plan.decodes) == 2  # [150, 140] and [40, 5, 3] (40 pads the others by < 64)
    output = paged_attention(query, kv_cache, layer_idx, plan)
    for i in range(len(context_lens)):
        rows = slice(query_start_locs[i], query_start_locs[i + 1])
        expected = dense_causal_attention(query[rows], full_keys[i], full_values[i])
        torch.testing.assert_close(output[rows], expected, atol=1e-5, rtol=1e-5)


def test_block_table_shorter_than_the_context_is_rejected() -> None:
    attn = AttentionMetadata(
        slot_mapping=torch.tensor([0]),
        query_start_locs=(0, 1),
        context_lens=(9,),
        block_tables=(torch.tensor([0, 1]),),
    )
    with pytest.raises(ValueError, match="needs 3 blocks"):
        plan_attention(attn, empty_cache())


@pytest.mark.parametrize(
    ("query_start_locs", "context_lens", "num_tables", "num_slots", "message"),
    [
        ((0, 3), (2,), 1, 3, "query_len 3"),
        ((0, 2, 2), (2, 4), 2, 2, "query_len 0"),
        ((0, 2), (2, 4), 2, 2, "query_start_locs"),
        ((0, 2), (2,), 1, 3, "slot_mapping"),
        ((1, 2), (2,), 1, 1, "start at 0"),
    ],
)
def test_inconsistent_attention_metadata_is_rejected(
    query_start_locs: tuple[int, ...],
    context_lens: tuple[int, ...],
    num_tables: int,
    num_slots: int,
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        AttentionMetadata(
            slot_mapping=torch.zeros(num_slots, dtype=torch.int64),
            query_start_locs=query_start_locs,
            context_lens=context_lens,
            block_tables=tuple(torch.tensor([0]) for _ in range(num_tables)),
        )
