"""Paged attention over the block-major KV cache.

Cache layout (one tensor per device, fixed by the design):
    kv_cache: [num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim], index 0 = K, 1 = V.
A block holds block_size tokens of every layer's K and V, so contiguous block ids are one
contiguous memory range (one copy per extent when swapping).

A batch is flattened: the new tokens of all sequences are rows of one [num_tokens, ...] tensor.
The new tokens of sequence i are its positions context_lens[i] - query_len .. context_lens[i] - 1,
so a full prefill, a prefill chunk that attends to already-cached context and a decode step are
one case. Per forward pass the model builds an `AttentionPlan` once and every layer reuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence


@dataclass(frozen=True)
class AttentionMetadata:
    """Where a batch's new tokens go in the KV cache and what each sequence attends to."""

    # [num_tokens] int64: flat slot gpu_block_id * block_size + offset of each new token's K/V.
    slot_mapping: torch.Tensor
    # len num_seqs + 1; seq i's new tokens are rows query_start_locs[i]:query_start_locs[i + 1].
    query_start_locs: tuple[int, ...]
    # Per seq: tokens whose K/V is valid after this step (cached before + new now).
    context_lens: tuple[int, ...]
    # Per seq: [>= ceil(context_len / block_size)] int64 gpu block ids, in token order.
    block_tables: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        num_seqs = len(self.context_lens)
        if len(self.query_start_locs) != num_seqs + 1 or len(self.block_tables) != num_seqs:
            raise ValueError(
                f"{num_seqs} context_lens need {num_seqs + 1} query_start_locs and {num_seqs} "
                f"block_tables, got {len(self.query_start_locs)} and {len(self.block_tables)}"
            )
        if self.query_start_locs[0] != 0:
            raise ValueError("query_start_locs must start at 0")
        for seq_index, (query_len, context_len) in enumerate(
            zip(self.query_lens, self.context_lens, strict=True)
        ):
            if not 1 <= query_len <= context_len:
                raise ValueError(
                    f"seq {seq_index}: query_len {query_len} must be in [1, context_len "
                    f"{context_len}]"
                )
        if tuple(self.slot_mapping.shape) != (self.num_tokens,):
            raise ValueError(
                f"slot_mapping must have shape ({self.num_tokens},), got {tuple(self.slot_mapping.shape)}"
            )

    @property
    def num_seqs(self) -> int:
        return len(self.context_lens)

    @property
    def num_tokens(self) -> int:
        return self.query_start_locs[-1]

    @property
    def query_lens(self) -> tuple[int, ...]:
        return tuple(
            end - start
            for start, end in zip(
                self.query_start_locs[:-1], self.query_start_locs[1:], strict=True
            )
        )


def write_kv(
    kv_cache: torch.Tensor,
    layer_idx: int,
    key: torch.Tensor,
    value: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Write one layer's new K/V ([num_tokens, num_kv_heads, head_dim]) at their slots; mutates kv_cache."""
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
    context_len: int
    block_ids: torch.Tensor  # [ceil(context_len / block_size)] int64, on the cache's device
    mask: torch.Tensor | None  # [query_len, context_len] bool (True = attend), None if is_causal
    is_causal: bool


@dataclass(frozen=True)
class _DecodePlan:
    """All sequences with one new token, attended in one padded batch."""

    row_ids: torch.Tensor  # [num_decodes] int64 rows of the flattened batch
    block_ids: torch.Tensor  # [num_decodes, max_num_blocks] int64, padded with block 0
    key_len: int  # max context_len among the decodes
    key_mask: torch.Tensor | None  # [num_decodes, 1, 1, key_len] bool, None if all lens equal


@dataclass(frozen=True)
class AttentionPlan:
    """Gather indices and masks for one forward pass, shared by every layer."""

    chunks: tuple[_ChunkPlan, ...]
    decode: _DecodePlan | None


def plan_attention(attn: AttentionMetadata, block_size: int, device: torch.device) -> AttentionPlan:
    """Build the per-forward attention plan; pure (only reads `attn`)."""
    chunks: list[_ChunkPlan] = []
    decode_rows: list[int] = []
    decode_tables: list[torch.Tensor] = []
    decode_lens: list[int] = []
    for seq_index, context_len in enumerate(attn.context_lens):
        start, end = attn.query_start_locs[seq_index], attn.query_start_locs[seq_index + 1]
        num_blocks = -(-context_len // block_size)
        table = attn.block_tables[seq_index]
        if table.shape[0] < num_blocks:
            raise ValueError(
                f"seq {seq_index}: block table has {table.shape[0]} blocks, context_len "
                f"{context_len} needs {num_blocks} blocks of {block_size} tokens"
            )
        block_ids = table[:num_blocks].to(device=device, dtype=torch.int64)
        query_len = end - start
        if query_len == 1:
            decode_rows.append(start)
            decode_tables.append(block_ids)
            decode_lens.append(context_len)
            continue
        is_causal = query_len == context_len
        mask = None
        if not is_causal:
            # Query j sits at position context_len - query_len + j and sees keys up to it.
            query_positions = torch.arange(context_len - query_len, context_len, device=device)
            key_positions = torch.arange(context_len, device=device)
            mask = key_positions[None, :] <= query_positions[:, None]
        chunks.append(_ChunkPlan(start, end, context_len, block_ids, mask, is_causal))
    decode = None
    if decode_rows:
        key_len = max(decode_lens)
        key_mask = None
        if min(decode_lens) != key_len:
            lens = torch.tensor(decode_lens, device=device)
            key_mask = (torch.arange(key_len, device=device)[None, :] < lens[:, None])[
                :, None, None, :
            ]
        decode = _DecodePlan(
            row_ids=torch.tensor(decode_rows, dtype=torch.int64, device=device),
            block_ids=pad_sequence(decode_tables, batch_first=True, padding_value=0),
            key_len=key_len,
            key_mask=key_mask,
        )
    return AttentionPlan(chunks=tuple(chunks), decode=decode)


def _gather_kv(
    layer_cache: torch.Tensor, block_ids: torch.Tensor, key_len: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """K and V of the given blocks as [*block_ids.shape[:-1], num_kv_heads, key_len, head_dim]."""
    # layer_cache: [num_blocks, 2, block_size, num_kv_heads, head_dim]
    gathered = layer_cache[block_ids]  # [..., num_blocks, 2, block_size, num_kv_heads, head_dim]
    gathered = gathered.transpose(-4, -5)  # [..., 2, num_blocks, block_size, heads, head_dim]
    shape = gathered.shape
    tokens = gathered.reshape(*shape[:-4], shape[-4] * shape[-3], *shape[-2:])[..., :key_len, :, :]
    tokens = tokens.transpose(-2, -3).to(dtype)  # [..., 2, num_kv_heads, key_len, head_dim]
    return tokens.select(-4, 0), tokens.select(-4, 1)


def paged_attention(
    query: torch.Tensor, kv_cache: torch.Tensor, layer_idx: int, plan: AttentionPlan
) -> torch.Tensor:
    """Causal attention of the new tokens over their sequences' cached K/V; pure.

    query: [num_tokens, num_heads, head_dim] (RoPE applied); returns the same shape. The new
    tokens' K/V must already be in the cache (`write_kv`). num_heads may be a multiple of
    num_kv_heads (grouped-query attention: kv head h serves query heads h*g .. h*g + g - 1).
    """
    layer_cache = kv_cache[:, layer_idx]
    output = torch.empty_like(query)
    for chunk in plan.chunks:
        keys, values = _gather_kv(layer_cache, chunk.block_ids, chunk.context_len, query.dtype)
        chunk_query = query[chunk.query_start : chunk.query_end].transpose(0, 1)  # [heads, n, dim]
        chunk_output = F.scaled_dot_product_attention(
            chunk_query.unsqueeze(0),
            keys.unsqueeze(0),
            values.unsqueeze(0),
            attn_mask=chunk.mask,
            is_causal=chunk.is_causal,
            enable_gqa=True,
        )  # [1, heads, n, dim]
        output[chunk.query_start : chunk.query_end] = chunk_output[0].transpose(0, 1)
    if plan.decode is not None:
        decode = plan.decode
        keys, values = _gather_kv(layer_cache, decode.block_ids, decode.key_len, query.dtype)
        decode_query = query[decode.row_ids].unsqueeze(2)  # [num_decodes, heads, 1, head_dim]
        decode_output = F.scaled_dot_product_attention(
            decode_query, keys, values, attn_mask=decode.key_mask, enable_gqa=True
        )
        output[decode.row_ids] = decode_output.squeeze(2)
    return output
