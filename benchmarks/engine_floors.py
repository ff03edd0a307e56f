"""Lower bounds of an engine step's time on a GPU: memory bandwidth and bf16 compute (pure).

Memory floor: the bytes a step must read at least once (every weight but the embedding table,
of which only the batch's rows; plus every attended token's K/V) over HBM bandwidth. Compute
floor: the step's matmul and attention FLOPs over the dense bf16 peak. A step can be no faster
than the larger of the two; the ratio to it says how much is left on the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

H200_HBM_GBPS = 4800.0  # HBM3e, GB/s (NVIDIA's figure for the H200 SXM)
H200_BF16_TFLOPS = 989.0  # dense bf16 tensor-core peak, TFLOP/s


@dataclass(frozen=True)
class ModelShape:
    """What the floors need from a model."""

    num_weight_bytes: int  # every parameter, once
    num_embedding_bytes: int  # the input embedding table (0 when tied to lm_head: read anyway)
    hidden_bytes: int  # one embedding row
    num_matmul_params: int  # parameters in the layers' matmuls (not lm_head, embedding, norms)
    num_lm_head_params: int  # applied to sampled rows only
    num_layers: int
    num_heads: int
    head_dim: int
    kv_bytes_per_token: int  # K and V of every layer

    @classmethod
    def of(cls, model: torch.nn.Module, kv_bytes_per_token: int) -> ModelShape:
        config = model.config
        embedding = model.model.embed_tokens.weight
        is_tied = model.lm_head.weight is embedding
        num_weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        norms = sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
        num_params = sum(p.numel() for p in model.parameters())
        lm_head_params = model.lm_head.weight.numel()
        matmul_params = (num_params - norms - lm_head_params
                         - (0 if is_tied else embedding.numel()))
        return cls(num_weight_bytes=num_weight_bytes,
                   num_embedding_bytes=0 if is_tied else embedding.numel() * embedding.element_size(),
                   hidden_bytes=embedding.shape[1] * embedding.element_size(),
                   num_matmul_params=matmul_params, num_lm_head_params=lm_head_params,
                   num_layers=config.num_layers,
                   num_heads=config.num_attention_heads, head_dim=config.head_dim,
                   kv_bytes_per_token=kv_bytes_per_token)


def step_floors_ms(shape: ModelShape, *, query_lens: list[int], context_lens: list[int],
                   num_sampled: int, hbm_gbps: float, bf16_tflops: float) -> dict[str, float]:
    """Memory and compute floors (ms) of one step; seq i adds query_lens[i] tokens to reach
    context_lens[i]. Pure."""
    num_tokens = sum(query_lens)
    read_bytes = (shape.num_weight_bytes - shape.num_embedding_bytes
                  + num_tokens * shape.hidden_bytes
                  + sum(context_lens) * shape.kv_bytes_per_token)
    # Attention: QK^T and PV, 2 FLOPs per multiply-add each, per head and layer, for every
    # (query, visible key) pair; query j of a chunk sees context - query_len + j + 1 keys.
    num_pairs = sum(q * (c - q) + q * (q + 1) // 2
                    for q, c in zip(query_lens, context_lens, strict=True))
    attention_flops = 4 * shape.num_layers * shape.num_heads * shape.head_dim * num_pairs
    # lm_head runs only on sampled rows; every other matmul on every token.
    flops = (2 * shape.num_matmul_params * num_tokens + 2 * shape.num_lm_head_params * num_sampled
             + attention_flops)
    memory_ms = read_bytes / (hbm_gbps * 1e9) * 1e3
    compute_ms = flops / (bf16_tflops * 1e12) * 1e3
    return {"memory_floor_ms": memory_ms, "compute_floor_ms": compute_ms,
            "floor_ms": max(memory_ms, compute_ms), "read_bytes": float(read_bytes),
            "flops": float(flops), "num_sampled": float(num_sampled)}
