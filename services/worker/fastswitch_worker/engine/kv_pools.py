"""Allocates the GPU and host KV pools (same block-major layout, separate id spaces)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastswitch_worker.engine.model_config import ModelConfig

DEFAULT_CPU_KV_BYTES = 256 << 20


@dataclass(frozen=True)
class KVPools:
    gpu_kv: torch.Tensor  # [num_gpu_blocks, num_layers, 2, block_size, num_kv_heads, head_dim]
    host_kv: torch.Tensor  # [num_host_blocks, ...same]; pinned when the GPU pool is on CUDA
    block_bytes: int

    @property
    def num_gpu_blocks(self) -> int:
        return self.gpu_kv.shape[0]

    @property
    def num_host_blocks(self) -> int:
        return self.host_kv.shape[0]


def block_shape(model_config: ModelConfig, block_size: int) -> tuple[int, ...]:
    return (model_config.num_layers, 2, block_size, model_config.num_kv_heads, model_config.head_dim)


def allocate_kv_pools(model_config: ModelConfig, *, block_size: int, dtype: torch.dtype,
                      device: torch.device, kv_cache_bytes: int | None,
                      gpu_memory_fraction: float, host_kv_bytes: int) -> KVPools:
    """Size the pools from the budgets (CUDA: a fraction of free memory unless a byte budget
    is given; CPU: the byte budget, default 256 MiB) and allocate them zeroed."""
    shape = block_shape(model_config, block_size)
    block_bytes = model_config.kv_bytes_per_token(dtype) * block_size
    if kv_cache_bytes is None:
        if device.type == "cuda":
            free_bytes, _ = torch.cuda.mem_get_info(device)
            kv_cache_bytes = int(free_bytes * gpu_memory_fraction)
        else:
            kv_cache_bytes = DEFAULT_CPU_KV_BYTES
    num_gpu_blocks = kv_cache_bytes // block_bytes
    if num_gpu_blocks < 1:
        raise ValueError(
            f"KV budget of {kv_cache_bytes} bytes holds no block of {block_bytes} bytes "
            f"(block_size {block_size}); raise the budget or lower block_size")
    num_host_blocks = host_kv_bytes // block_bytes
    gpu_kv = torch.zeros((num_gpu_blocks, *shape), dtype=dtype, device=device)
    is_pinned = device.type == "cuda"
    host_kv = torch.zeros((num_host_blocks, *shape), dtype=dtype, pin_memory=is_pinned)
    return KVPools(gpu_kv, host_kv, block_bytes)
