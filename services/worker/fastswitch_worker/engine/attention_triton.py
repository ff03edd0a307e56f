"""A Triton paged-decode kernel that reads the block-major cache in place.

One program per (sequence, KV head): it loads the g query heads that share the KV head, walks
the sequence's tokens TILE_TOKENS at a time (each token's block looked up in the table) over
the strided per-layer view
`kv_cache[:, layer, 0 or 1]` ([num_blocks, block_size, kv_heads, head_dim], block stride
num_layers * 2 * block_size * kv_heads * head_dim) and keeps an online softmax, so nothing is
gathered or padded. All metadata lives in device tensors of fixed shape (block tables
[num_seqs, max_blocks_per_seq] int32, context lens [num_seqs] int32), so a CUDA graph can
replay it with new values. Triton is imported lazily: `TRITON_INTERPRET=1` runs the same kernel
on CPU tensors (tests); the engine uses it on CUDA when FlashInfer is absent.
"""

from __future__ import annotations

import functools

import torch

TILE_TOKENS = 64  # tokens per inner step: several blocks at once, whatever block_size is
# Flash-decoding: with fewer (sequence, KV head) programs than this, each sequence's context is
# split over up to MAX_SPLITS programs (an H200 has 132 SMs) and the partials merged after.
TARGET_PROGRAMS = 256
MAX_SPLITS = 16


def is_supported(block_size: int, head_dim: int) -> bool:
    """The kernel's tiles need a power-of-two head_dim of at least 16 (any block_size)."""
    return block_size >= 1 and head_dim >= 16 and head_dim & (head_dim - 1) == 0


@functools.cache
def _kernel():  # noqa: ANN202 - a triton.JITFunction, built on first use
    import triton
    import triton.language as tl

    @triton.jit
    def paged_decode_kernel(
        query_ptr, key_cache_ptr, value_cache_ptr, block_tables_ptr, context_lens_ptr, out_ptr,
        partial_ptr, stats_ptr, scale,
        stride_q_seq, stride_q_head,
        stride_cache_block, stride_cache_token, stride_cache_head,
        stride_table_seq,
        stride_out_seq, stride_out_head,
        GROUP: tl.constexpr, BLOCK_GROUP: tl.constexpr, HEAD_DIM: tl.constexpr,
        BLOCK_SIZE: tl.constexpr, TILE: tl.constexpr, PRECISION: tl.constexpr,
        NUM_SPLITS: tl.constexpr,
    ):
        seq = tl.program_id(0)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        context_len = tl.load(context_lens_ptr + seq)
        group_rows = tl.arange(0, BLOCK_GROUP)
        dims = tl.arange(0, HEAD_DIM)
        tile_tokens = tl.arange(0, TILE)
        is_group_row = group_rows < GROUP
        heads = kv_head * GROUP + group_rows
        # [BLOCK_GROUP, HEAD_DIM] the query heads served by this KV head
        query = tl.load(query_ptr + seq * stride_q_seq + heads[:, None] * stride_q_head
                        + dims[None, :], mask=is_group_row[:, None], other=0.0)
        running_max = tl.full([BLOCK_GROUP], float("-inf"), tl.float32)
        running_sum = tl.zeros([BLOCK_GROUP], tl.float32)
        acc = tl.zeros([BLOCK_GROUP, HEAD_DIM], tl.float32)
        # Split s takes tiles s, s + NUM_SPLITS, ...: every split's share is known without
        # knowing the context length when the grid is fixed (CUDA graphs).
        for tile_start in range(split * TILE, context_len, TILE * NUM_SPLITS):
            tokens = tile_start + tile_tokens  # [TILE] positions in the sequence
            is_valid = tokens < context_len
            # Each token's block from the table: a tile may span several (scattered) blocks.
            block_ids = tl.load(block_tables_ptr + seq * stride_table_seq + tokens // BLOCK_SIZE,
                                mask=is_valid, other=0)
            offsets = (block_ids.to(tl.int64)[:, None] * stride_cache_block
                       + (tokens % BLOCK_SIZE)[:, None] * stride_cache_token
                       + kv_head * stride_cache_head + dims[None, :])
            keys = tl.load(key_cache_ptr + offsets, mask=is_valid[:, None], other=0.0)
            values = tl.load(value_cache_ptr + offsets, mask=is_valid[:, None], other=0.0)
            scores = tl.dot(query, tl.trans(keys), input_precision=PRECISION) * scale
            scores = tl.where(is_valid[None, :], scores, float("-inf"))  # [BLOCK_GROUP, TILE]
            new_max = tl.maximum(running_max, tl.max(scores, axis=1))
            weights = tl.exp(scores - new_max[:, None])
            correction = tl.exp(running_max - new_max)
            running_sum = running_sum * correction + tl.sum(weights, axis=1)
            acc = acc * correction[:, None] + tl.dot(weights.to(values.dtype), values,
                                                     input_precision=PRECISION)
            running_max = new_max
        if NUM_SPLITS == 1:
            out = acc / running_sum[:, None]
            tl.store(out_ptr + seq * stride_out_seq + heads[:, None] * stride_out_head
                     + dims[None, :], out.to(out_ptr.dtype.element_ty),
                     mask=is_group_row[:, None])
        else:
            # Unnormalised partials: [num_seqs, num_heads, NUM_SPLITS, HEAD_DIM] float32, and
            # [num_seqs, num_heads, NUM_SPLITS, 2] (running max, running sum); merged by
            # _merge_splits. A split with no tokens leaves max -inf and sum 0.
            row = (seq * (GROUP * tl.num_programs(1)) + heads) * NUM_SPLITS + split
            tl.store(partial_ptr + row[:, None] * HEAD_DIM + dims[None, :], acc,
                     mask=is_group_row[:, None])
            tl.store(stats_ptr + row * 2, running_max, mask=is_group_row)
            tl.store(stats_ptr + row * 2 + 1, running_sum, mask=is_group_row)

    return paged_decode_kernel


def num_splits_for(num_seqs: int, num_kv_heads: int) -> int:
    """Splits of each sequence's context so a small batch still fills the GPU; pure.

    Depends on the batch shape only (not on context lengths), so a CUDA graph's grid is fixed.
    """
    return max(1, min(MAX_SPLITS, TARGET_PROGRAMS // max(1, num_seqs * num_kv_heads)))


def _merge_splits(partials: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
    """[s, h, n, d] partial sums and [s, h, n, 2] (max, sum) -> [s, h, d] float32 attention."""
    maxima, sums = stats[..., 0], stats[..., 1]
    overall = maxima.max(dim=-1, keepdim=True).values  # finite: split 0 holds token 0
    weights = torch.exp(maxima - overall)  # 0 for empty splits
    numerator = (partials * weights[..., None]).sum(dim=-2)
    return numerator / (sums * weights).sum(dim=-1)[..., None]


def paged_decode(query: torch.Tensor, kv_cache: torch.Tensor, layer_idx: int,
                 block_tables: torch.Tensor, context_lens: torch.Tensor,
                 num_splits: int | None = None) -> torch.Tensor:
    """Attention of one new token per sequence over its cached K/V, read in place; pure.

    query: [num_seqs, num_heads, head_dim]; block_tables: [num_seqs, >= max blocks] int32;
    context_lens: [num_seqs] int32 (>= 1, including the new token, whose K/V is in the cache).
    num_splits: context splits per sequence (flash-decoding), default num_splits_for().
    Returns [num_seqs, num_heads, head_dim].
    """
    num_seqs, num_heads, head_dim = query.shape
    block_size, num_kv_heads = kv_cache.shape[3], kv_cache.shape[4]
    if not is_supported(block_size, head_dim):
        raise ValueError(f"triton paged decode needs a power-of-two head_dim >= 16, got "
                         f"{head_dim}")
    group = num_heads // num_kv_heads
    if num_splits is None:
        num_splits = num_splits_for(num_seqs, num_kv_heads)
    key_cache, value_cache = kv_cache[:, layer_idx, 0], kv_cache[:, layer_idx, 1]
    query = query.contiguous()
    out = torch.empty_like(query)
    partials = stats = out  # unused by the kernel when num_splits == 1
    if num_splits > 1:
        partials = torch.empty(num_seqs, num_heads, num_splits, head_dim, dtype=torch.float32,
                               device=query.device)
        stats = torch.empty(num_seqs, num_heads, num_splits, 2, dtype=torch.float32,
                            device=query.device)
    _kernel()[(num_seqs, num_kv_heads, num_splits)](
        query, key_cache, value_cache, block_tables, context_lens, out, partials, stats,
        head_dim ** -0.5,
        query.stride(0), query.stride(1),
        key_cache.stride(0), key_cache.stride(1), key_cache.stride(2),
        block_tables.stride(0),
        out.stride(0), out.stride(1),
        GROUP=group, BLOCK_GROUP=max(16, 1 << (group - 1).bit_length()), HEAD_DIM=head_dim,
        BLOCK_SIZE=block_size, TILE=TILE_TOKENS,
        # fp32 caches keep fp32 products (tf32 would cost ~1e-3 relative error).
        PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        NUM_SPLITS=num_splits,
    )
    if num_splits > 1:
        out = _merge_splits(partials, stats).to(query.dtype)
    return out
