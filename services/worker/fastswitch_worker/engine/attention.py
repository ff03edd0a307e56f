"""Paged attention over the block-major KV cache: the reference backend (any device, exact).

Cache layout (one tensor per device, fixed by the design):
    kv_cache: [num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim], index 0 = K, 1 = V.
A block holds block_size tokens of every layer's K and V, so contiguous block ids are one
contiguous memory range (one copy per extent when swapping).

Per forward pass `plan_attention` turns the metadata into gather indices once; every layer then
reads exactly the K/V rows it needs with one `index_select` over the flat cache (no padded copy
of whole blocks, no per-layer index building). Decodes are attended in batches of similar
context length: a batch pads its keys to its longest context, so decodes of 600 and 60 tokens
together would gather and attend 1,200 key rows for 660 real ones; a new batch starts where a
context is shorter than `DECODE_BATCH_MIN_FILL` of the longest in its batch, which bounds the
padding at a quarter of the rows for a few more attention calls. A decode has a single query
position, so the g query heads sharing a KV head become g "query rows" of that KV head
([num_decodes, num_kv_heads, g, head_dim]) and grouped-query attention needs no repeated K/V.
A full prefill attends to the K/V it has just computed (same values as the cache holds).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fastswitch_worker.engine.attention_metadata import AttentionMetadata

__all__ = ["AttentionMetadata", "AttentionPlan", "decode_batches", "paged_attention",
           "plan_attention", "write_kv"]

# A decode batch's shortest context is at least this share of its longest (see above), unless
# it is within DECODE_BATCH_MIN_PADDING tokens of it: padding that short costs less than a call.
DECODE_BATCH_MIN_FILL = 0.75
DECODE_BATCH_MIN_PADDING = 64


def write_kv(
    kv_cache: torch.Tensor,
    layer_idx: int,
    key: torch.Tensor,
    value: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write one layer's new K/V ([num_tokens, num_kv_heads, head_dim]) at their slots; mutates kv_cache.

    Rows that share a slot must carry equal K/V (CUDA-graph padding repeats a real row).
    """
    block_size = kv_cache.shape[3]
    block_ids = torch.div(slot_mapping, block_size, rounding_mode="floor")
    offsets = slot_mapping - block_ids * block_size
    # View [num_blocks, 2, block_size, num_kv_heads, head_dim]; advanced indices on dims 0 and 2
    # select one [2, num_kv_heads, head_dim] slice per token.
    layer_cache = kv_cache[:, layer_idx]
    layer_cache[block_ids, :, offsets] = torch.stack((key, value), dim=1).to(kv_cache.dtype)


@dataclass(frozen=True)
class _ChunkPlan:
    """One sequence with several new tokens (a prefill or prefill chunk), attended alone."""

    query_start: int
    query_end: int
    # [2 * context_len] int64 rows of the flat cache (K rows then V rows) in layer 0.
    kv_rows: torch.Tensor
    # [query_len, context_len] bool (True = attend); None for a full prefill (plain causal),
    # which attends to its freshly computed K/V when the caller passes them.
    mask: torch.Tensor | None


@dataclass(frozen=True)
class _DecodePlan:
    """Sequences with one new token and similar contexts, attended in one padded batch."""

    row_ids: torch.Tensor  # [num_decodes] int64 rows of the flattened batch
    is_all_rows: bool  # the decodes are the whole batch, in order (no row gather/scatter)
    kv_rows: torch.Tensor  # [2 * num_decodes * key_len] int64 flat-cache rows in layer 0
    key_len: int  # max context_len among the decodes
    # [num_decodes, 1, 1, key_len] additive float mask (-inf past a context), None if all equal
    key_mask: torch.Tensor | None


@dataclass(frozen=True)
class AttentionPlan:
    """Gather indices and masks for one forward pass, shared by every layer."""

    layer_stride_rows: int  # flat-cache rows between one layer's K rows and the next layer's
    chunks: tuple[_ChunkPlan, ...]
    decodes: tuple[_DecodePlan, ...]  # longest contexts first


def _flat_rows(block_tables: np.ndarray, key_len: int, block_size: int, num_layers: int,
               valid_lens: np.ndarray) -> np.ndarray:
    """[2, num_seqs, key_len] rows of the flat cache ([-1, kv_heads, head_dim] view) holding
    layer 0's K (index 0) and V (index 1) of token t of seq s. Positions past a sequence's
    valid length repeat its first token (masked out later)."""
    positions = np.arange(key_len, dtype=np.int64)[None, :]
    positions = np.where(positions < valid_lens[:, None], positions, 0)
    block_ids = np.take_along_axis(block_tables, positions // block_size, axis=1)
    # Flat row of (block, layer 0, K, offset) = block * num_layers * 2 * block_size + offset.
    key_rows = block_ids * (num_layers * 2 * block_size) + positions % block_size
    return np.stack((key_rows, key_rows + block_size))


def plan_attention(attn: AttentionMetadata, kv_cache: torch.Tensor) -> AttentionPlan:
    """Build the per-forward attention plan for `kv_cache`'s shape and device; pure."""
    num_layers, block_size = kv_cache.shape[1], kv_cache.shape[3]
    device = kv_cache.device
    attn.check_block_tables(block_size)
    query_lens = attn.query_lens
    is_decode = query_lens == 1
    chunks: list[_ChunkPlan] = []
    for seq_index in np.flatnonzero(~is_decode).tolist():
        start, end = int(attn.query_start_locs[seq_index]), int(attn.query_start_locs[seq_index + 1])
        context_len = int(attn.context_lens[seq_index])
        query_len = end - start
        rows = _flat_rows(attn.block_tables[seq_index : seq_index + 1], context_len, block_size,
                          num_layers, attn.context_lens[seq_index : seq_index + 1])
        mask = None
        if query_len != context_len:
            # Query j sits at position context_len - query_len + j and sees keys up to it.
            query_positions = torch.arange(context_len - query_len, context_len, device=device)
            mask = torch.arange(context_len, device=device)[None, :] <= query_positions[:, None]
        chunks.append(_ChunkPlan(start, end, torch.from_numpy(rows.reshape(-1)).to(device), mask))
    decodes = []
    decode_seqs = np.flatnonzero(is_decode)
    is_all_rows = bool(decode_seqs.size == attn.num_tokens)
    for batch in decode_batches(attn.context_lens[decode_seqs]):
        seqs = decode_seqs[batch]
        lens = attn.context_lens[seqs]
        key_len = int(lens.max())
        rows = _flat_rows(attn.block_tables[seqs], key_len, block_size, num_layers, lens)
        key_mask = None
        if int(lens.min()) != key_len:
            is_past = np.arange(key_len)[None, :] >= lens[:, None]
            key_mask = torch.from_numpy(np.where(is_past, -np.inf, 0.0)).to(
                device=device, dtype=kv_cache.dtype)[:, None, None, :]
        decodes.append(_DecodePlan(
            row_ids=torch.from_numpy(attn.query_start_locs[seqs]).to(device),
            # One batch of every row in order needs no gather or scatter of rows.
            is_all_rows=is_all_rows and seqs.size == decode_seqs.size,
            kv_rows=torch.from_numpy(rows.reshape(-1)).to(device),
            key_len=key_len, key_mask=key_mask))
    return AttentionPlan(layer_stride_rows=2 * block_size, chunks=tuple(chunks),
                         decodes=tuple(decodes))


def decode_batches(context_lens: np.ndarray) -> list[np.ndarray]:
    """Positions in `context_lens` grouped into decode batches (pure): longest first, a new
    batch wherever a context would pad to its batch's longest by more than both
    DECODE_BATCH_MIN_PADDING tokens and 1 - DECODE_BATCH_MIN_FILL of the longest. In the
    order of `context_lens` when one batch holds them all."""
    if context_lens.size == 0:
        return []
    if not _needs_own_batch(int(context_lens.min()), int(context_lens.max())):
        return [np.arange(context_lens.size)]
    order = np.argsort(-context_lens, kind="stable")
    ordered_lens = context_lens[order].tolist()
    batches, start = [], 0
    for index, length in enumerate(ordered_lens):
        if _needs_own_batch(length, ordered_lens[start]):
            batches.append(order[start:index])
            start = index
    batches.append(order[start:])
    return batches


def _needs_own_batch(context_len: int, longest: int) -> bool:
    return (longest - context_len > DECODE_BATCH_MIN_PADDING
            and context_len < DECODE_BATCH_MIN_FILL * longest)


def _gather(flat_cache: torch.Tensor, rows: torch.Tensor, layer_offset: int,
            dtype: torch.dtype) -> torch.Tensor:
    """[2, n, num_kv_heads, head_dim]: K and V at `rows` (layer 0 rows) of layer `layer_offset`."""
    gathered = flat_cache.index_select(0, rows + layer_offset if layer_offset else rows)
    return gathered.view(2, -1, *flat_cache.shape[1:]).to(dtype)


def paged_attention(
    query: torch.Tensor,
    kv_cache: torch.Tensor,
    layer_idx: int,
    plan: AttentionPlan,
    key: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal attention of the new tokens over their sequences' cached K/V; pure.

    query: [num_tokens, num_heads, head_dim] (RoPE applied); returns the same shape. The new
    tokens' K/V must already be in the cache (`write_kv`); key/value ([num_tokens, kv_heads,
    head_dim], as written) let full prefills skip reading them back. num_heads may be a
    multiple of num_kv_heads (grouped-query attention: kv head h serves query heads h*g ..
    h*g + g - 1).
    """
    num_kv_heads, head_dim = kv_cache.shape[4], kv_cache.shape[5]
    flat_cache = kv_cache.view(-1, num_kv_heads, head_dim)  # the cache is one contiguous tensor
    layer_offset = layer_idx * plan.layer_stride_rows
    if len(plan.decodes) == 1 and plan.decodes[0].is_all_rows and not plan.chunks:
        return _attend_decodes(query, flat_cache, layer_offset, plan.decodes[0])
    output = torch.empty_like(query)
    for chunk in plan.chunks:
        rows = slice(chunk.query_start, chunk.query_end)
        if chunk.mask is None and key is not None and value is not None:
            # Round through the cache dtype so the values equal what a cache read returns.
            keys = key[rows].to(kv_cache.dtype).to(query.dtype)
            values = value[rows].to(kv_cache.dtype).to(query.dtype)
        else:
            keys, values = _gather(flat_cache, chunk.kv_rows, layer_offset, query.dtype)
        chunk_output = F.scaled_dot_product_attention(
            query[rows].transpose(0, 1).unsqueeze(0),  # [1, heads, n, dim]
            keys.transpose(0, 1).unsqueeze(0),
            values.transpose(0, 1).unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=chunk.mask is None,
            enable_gqa=True,
        )  # [1, heads, n, dim]
        output[rows] = chunk_output[0].transpose(0, 1)
    for decode in plan.decodes:
        output[decode.row_ids] = _attend_decodes(
            query[decode.row_ids], flat_cache, layer_offset, decode)
    return output


def _attend_decodes(query: torch.Tensor, flat_cache: torch.Tensor, layer_offset: int,
                    decode: _DecodePlan) -> torch.Tensor:
    """[num_decodes, heads, head_dim] -> same: one attention call for every decode."""
    num_decodes, num_heads, head_dim = query.shape
    num_kv_heads = flat_cache.shape[1]
    keys, values = _gather(flat_cache, decode.kv_rows, layer_offset, query.dtype)
    # [num_decodes, key_len, kv_heads, dim] -> [num_decodes, kv_heads, key_len, dim] (views)
    keys = keys.view(num_decodes, decode.key_len, num_kv_heads, head_dim).transpose(1, 2)
    values = values.view(num_decodes, decode.key_len, num_kv_heads, head_dim).transpose(1, 2)
    # The g query heads of one KV head are g rows of a single-position query.
    grouped = query.view(num_decodes, num_kv_heads, num_heads // num_kv_heads, head_dim)
    attended = F.scaled_dot_product_attention(grouped, keys, values, attn_mask=decode.key_mask)
    return attended.reshape(num_decodes, num_heads, head_dim)
