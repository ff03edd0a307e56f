"""FlashInfer's paged attention over strided per-layer views of the block-major cache (CUDA).

`kv_cache[:, layer, 0]` is a [num_blocks, block_size, kv_heads, head_dim] view whose block
stride spans all layers (num_layers * 2 * block_size * kv_heads * head_dim elements); FlashInfer's
paged kernels take the page stride from the tensor (`stride(0)`), so the (K, V) tuple of views is
read in place in the "NHD" layout and the layout that makes a swap one copy stays as it is.

Decode-only batches go through BatchDecodeWithPagedKVCacheWrapper (tensor cores: grouped-query
heads share a KV head), batches with prefill chunks through BatchPrefillWithPagedKVCacheWrapper
with causal=True (a chunk's queries are the last tokens of its context). Page tables are built
on the host with numpy once per forward; `plan()` takes host tensors, so no device sync.
FlashInfer is imported here only, and this module only when the backend is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastswitch_worker.engine.attention_metadata import AttentionMetadata

WORKSPACE_BYTES = 256 << 20  # FlashInfer's float workspace (split-KV partial results)


def page_table(block_tables: np.ndarray, context_lens: np.ndarray,
               block_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FlashInfer's CSR page table: (indptr [n + 1], indices [sum pages], last_page_len [n]),
    all int32; pure. Each sequence uses its first ceil(context_len / block_size) blocks."""
    num_pages = -(-context_lens // block_size)
    indptr = np.zeros(context_lens.shape[0] + 1, dtype=np.int32)
    np.cumsum(num_pages, out=indptr[1:])
    is_used = np.arange(block_tables.shape[1])[None, :] < num_pages[:, None]
    indices = block_tables[is_used].astype(np.int32)  # row-major: sequence after sequence
    last_page_len = (context_lens - (num_pages - 1) * block_size).astype(np.int32)
    return indptr, indices, last_page_len


@dataclass(frozen=True)
class FlashInferPlan:
    wrapper: object  # a planned Batch{Decode,Prefill}WithPagedKVCacheWrapper
    is_decode: bool


class FlashInferBackend:
    name = "flashinfer"
    supports_graphs = True

    def __init__(self, device: torch.device, *, num_heads: int, num_kv_heads: int,
                 head_dim: int) -> None:
        import flashinfer

        self._flashinfer = flashinfer
        self._num_heads, self._num_kv_heads, self._head_dim = num_heads, num_kv_heads, head_dim
        self._workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        self._decode = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace, "NHD", use_tensor_cores=True)
        self._prefill = flashinfer.BatchPrefillWithPagedKVCacheWrapper(self._workspace, "NHD")

    def _plan_decode(self, wrapper: object, tables: tuple[np.ndarray, np.ndarray, np.ndarray],
                     kv_cache: torch.Tensor) -> None:
        indptr, indices, last_page_len = (torch.from_numpy(a) for a in tables)
        wrapper.plan(indptr, indices, last_page_len, self._num_heads, self._num_kv_heads,
                     self._head_dim, kv_cache.shape[3], pos_encoding_mode="NONE",
                     q_data_type=kv_cache.dtype, kv_data_type=kv_cache.dtype)

    def plan(self, attn: AttentionMetadata, kv_cache: torch.Tensor) -> FlashInferPlan:
        block_size = kv_cache.shape[3]
        attn.check_block_tables(block_size)
        tables = page_table(attn.block_tables, attn.context_lens, block_size)
        if attn.is_all_decode:
            self._plan_decode(self._decode, tables, kv_cache)
            return FlashInferPlan(self._decode, is_decode=True)
        indptr, indices, last_page_len = (torch.from_numpy(a) for a in tables)
        qo_indptr = torch.from_numpy(attn.query_start_locs.astype(np.int32))
        self._prefill.plan(qo_indptr, indptr, indices, last_page_len, self._num_heads,
                           self._num_kv_heads, self._head_dim, block_size, causal=True,
                           pos_encoding_mode="NONE", q_data_type=kv_cache.dtype,
                           kv_data_type=kv_cache.dtype)
        return FlashInferPlan(self._prefill, is_decode=False)

    def new_graph_plan(self, num_seqs: int, max_blocks_per_seq: int,
                       kv_cache: torch.Tensor) -> FlashInferPlan:
        """A decode wrapper whose page-table buffers stay put, for one CUDA graph."""
        device = kv_cache.device
        wrapper = self._flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self._workspace, "NHD", use_cuda_graph=True, use_tensor_cores=True,
            paged_kv_indptr_buffer=torch.zeros(num_seqs + 1, dtype=torch.int32, device=device),
            paged_kv_indices_buffer=torch.zeros(num_seqs * max_blocks_per_seq, dtype=torch.int32,
                                                device=device),
            paged_kv_last_page_len_buffer=torch.ones(num_seqs, dtype=torch.int32,
                                                     device=device))
        return FlashInferPlan(wrapper, is_decode=True)

    def fill_graph_plan(self, plan: object, block_tables: np.ndarray,
                        context_lens: np.ndarray, kv_cache: torch.Tensor) -> None:
        assert isinstance(plan, FlashInferPlan)
        self._plan_decode(plan.wrapper,
                          page_table(block_tables, context_lens, kv_cache.shape[3]), kv_cache)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               kv_cache: torch.Tensor, layer_idx: int, plan: object) -> torch.Tensor:
        assert isinstance(plan, FlashInferPlan)
        paged_kv = (kv_cache[:, layer_idx, 0], kv_cache[:, layer_idx, 1])  # strided views
        return plan.wrapper.run(query, paged_kv)
