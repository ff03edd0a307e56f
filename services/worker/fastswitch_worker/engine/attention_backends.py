"""Attention backends behind one interface, chosen by device; all plan from AttentionMetadata.

- "torch": the reference (attention.py), any device, exact against transformers; the CPU path.
- "triton": CUDA; decodes through our paged-decode kernel (attention_triton.py) reading the
  cache in place, prefill chunks through the reference path; supports CUDA-graph decode plans.
- "flashinfer": CUDA; FlashInfer's paged wrappers over strided per-layer views
  (attention_flashinfer.py); supports CUDA-graph decode plans.

A backend's `plan()` runs once per forward pass, outside any CUDA graph; `attend()` runs in every
layer. Backends that can serve CUDA graphs also build a static decode plan per batch-size bucket
(`new_graph_plan`) whose device buffers `fill_graph_plan` overwrites in place before a replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from fastswitch_worker.engine import attention_triton
from fastswitch_worker.engine.attention import AttentionPlan, paged_attention, plan_attention
from fastswitch_worker.engine.attention_metadata import AttentionMetadata

BACKEND_NAMES = ("auto", "torch", "triton", "flashinfer")


class AttentionBackend(Protocol):
    name: str
    supports_graphs: bool

    def plan(self, attn: AttentionMetadata, kv_cache: torch.Tensor) -> object:
        """Per-forward plan (device tensors); pure."""

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               kv_cache: torch.Tensor, layer_idx: int, plan: object) -> torch.Tensor:
        """[num_tokens, heads, head_dim] -> same; the new K/V are already in kv_cache."""


class GraphableBackend(AttentionBackend, Protocol):
    def new_graph_plan(self, num_seqs: int, max_blocks_per_seq: int,
                       kv_cache: torch.Tensor) -> object:
        """A decode plan with static device buffers for `num_seqs` sequences."""

    def fill_graph_plan(self, plan: object, block_tables: np.ndarray,
                        context_lens: np.ndarray, kv_cache: torch.Tensor) -> None:
        """Mutates plan's buffers: [num_seqs, n] block ids and [num_seqs] lens (host arrays)."""


class TorchBackend:
    """The reference: gather by index + SDPA (attention.py)."""

    name = "torch"
    supports_graphs = False

    def plan(self, attn: AttentionMetadata, kv_cache: torch.Tensor) -> AttentionPlan:
        return plan_attention(attn, kv_cache)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               kv_cache: torch.Tensor, layer_idx: int, plan: object) -> torch.Tensor:
        assert isinstance(plan, AttentionPlan)
        return paged_attention(query, kv_cache, layer_idx, plan, key, value)


@dataclass(frozen=True)
class TritonDecodePlan:
    """Device metadata of a decode-only batch; fixed shapes (static under CUDA graphs)."""

    block_tables: torch.Tensor  # [num_seqs, max_blocks_per_seq] int32
    context_lens: torch.Tensor  # [num_seqs] int32


class TritonBackend:
    """Decodes through the Triton kernel; batches with prefill chunks through the reference."""

    name = "triton"
    supports_graphs = True

    def plan(self, attn: AttentionMetadata, kv_cache: torch.Tensor) -> object:
        if not attn.is_all_decode:
            return plan_attention(attn, kv_cache)
        num_blocks = attn.check_block_tables(kv_cache.shape[3])
        plan = self.new_graph_plan(attn.num_seqs, int(num_blocks.max()), kv_cache)
        self.fill_graph_plan(plan, attn.block_tables, attn.context_lens, kv_cache)
        return plan

    def new_graph_plan(self, num_seqs: int, max_blocks_per_seq: int,
                       kv_cache: torch.Tensor) -> TritonDecodePlan:
        return TritonDecodePlan(
            torch.zeros(num_seqs, max_blocks_per_seq, dtype=torch.int32, device=kv_cache.device),
            torch.ones(num_seqs, dtype=torch.int32, device=kv_cache.device))

    def fill_graph_plan(self, plan: object, block_tables: np.ndarray,
                        context_lens: np.ndarray, kv_cache: torch.Tensor) -> None:
        assert isinstance(plan, TritonDecodePlan)
        num_cols = min(block_tables.shape[1], plan.block_tables.shape[1])
        host = np.zeros(tuple(plan.block_tables.shape), dtype=np.int32)
        host[:, :num_cols] = block_tables[:, :num_cols]
        plan.block_tables.copy_(torch.from_numpy(host), non_blocking=True)
        plan.context_lens.copy_(torch.from_numpy(context_lens.astype(np.int32)),
                                non_blocking=True)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               kv_cache: torch.Tensor, layer_idx: int, plan: object) -> torch.Tensor:
        if isinstance(plan, AttentionPlan):
            return paged_attention(query, kv_cache, layer_idx, plan, key, value)
        assert isinstance(plan, TritonDecodePlan)
        return attention_triton.paged_decode(query, kv_cache, layer_idx, plan.block_tables,
                                             plan.context_lens)


def _is_importable(module: str) -> bool:
    try:
        __import__(module)
    except Exception:  # noqa: BLE001 - a broken install is as good as none here
        return False
    return True


# FlashInfer's kernels cover 16-bit caches and these head sizes (Llama, Qwen2: 128).
FLASHINFER_HEAD_DIMS = (64, 128, 256)
FLASHINFER_DTYPES = (torch.float16, torch.bfloat16)


def select_backend(name: str, device: torch.device, *, block_size: int, num_heads: int,
                   num_kv_heads: int, head_dim: int,
                   dtype: torch.dtype = torch.bfloat16) -> AttentionBackend:
    """The backend `name` asks for ("auto": the fastest that works on `device` for a
    `dtype` cache of this shape). Raises ValueError for an unknown name or one that cannot
    run here.
    """
    if name not in BACKEND_NAMES:
        raise ValueError(f"unknown attention backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    is_cuda = device.type == "cuda"
    if name == "auto":
        if not is_cuda:
            return TorchBackend()
        is_flashinfer_shape = head_dim in FLASHINFER_HEAD_DIMS and dtype in FLASHINFER_DTYPES
        if is_flashinfer_shape and _is_importable("flashinfer"):
            name = "flashinfer"
        elif _is_importable("triton") and attention_triton.is_supported(block_size, head_dim):
            name = "triton"
        else:
            return TorchBackend()
    if name == "torch":
        return TorchBackend()
    if not is_cuda:
        raise ValueError(f"attention backend {name!r} needs a CUDA device, got {device}")
    if name == "triton":
        if not attention_triton.is_supported(block_size, head_dim):
            raise ValueError(f"the triton backend needs a power-of-two head_dim >= 16, got "
                             f"{head_dim}")
        return TritonBackend()
    from fastswitch_worker.engine.attention_flashinfer import FlashInferBackend

    return FlashInferBackend(device, num_heads=num_heads, num_kv_heads=num_kv_heads,
                             head_dim=head_dim)
