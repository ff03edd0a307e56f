"""EngineConfig: every knob of one worker engine, validated in one place."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass


class SwitchMode(enum.Enum):
    FASTSWITCH = "fastswitch"  # block groups, async copies on their own threads, KV reuse
    BASELINE = "baseline"  # vLLM v0: single blocks, per-block/layer/KV sync copies, no reuse


@dataclass(frozen=True)
class EngineConfig:
    model: str = "tiny"  # checkpoint directory or preset name (dummy weights)
    load_format: str = "auto"  # auto | safetensors | dummy
    # auto: the checkpoint's dtype (fp16 becomes fp32 on CPU) | float32 | bfloat16 | float16
    dtype: str = "auto"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    mode: SwitchMode = SwitchMode.FASTSWITCH
    block_size: int = 16
    # GPU pool size: a fraction of free CUDA memory, or an explicit byte budget (CPU default).
    gpu_memory_fraction: float = 0.85
    kv_cache_bytes: int | None = None
    host_kv_bytes: int = 1 << 30
    max_group_blocks: int = 64
    # FastSwitch mode: keep host copies valid across swap-ins and conversation turns.
    kv_reuse: bool = True
    max_num_batched_tokens: int = 512
    max_num_seqs: int = 64
    max_model_len: int | None = None  # default: the model's max_position_embeddings
    # Adaptive swap-in: wait instead of overlapping when this small and the batch this small.
    blocking_swap_in_max_blocks: int = 8
    blocking_swap_in_max_batch: int = 2
    # Intra-op threads for compute; default leaves one core per copy thread in async mode.
    num_compute_threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.mode, str):
            object.__setattr__(self, "mode", SwitchMode(self.mode))
        if self.block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {self.block_size}")
        if not 0 < self.gpu_memory_fraction <= 1:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1], got {self.gpu_memory_fraction}")
        if self.kv_cache_bytes is not None and self.kv_cache_bytes <= 0:
            raise ValueError(f"kv_cache_bytes must be > 0, got {self.kv_cache_bytes}")
        if self.host_kv_bytes < 0:
            raise ValueError(f"host_kv_bytes must be >= 0, got {self.host_kv_bytes}")
        if self.max_num_batched_tokens <= 0 or self.max_num_seqs <= 0:
            raise ValueError("max_num_batched_tokens and max_num_seqs must be > 0")
        if self.max_group_blocks <= 0:
            raise ValueError(f"max_group_blocks must be > 0, got {self.max_group_blocks}")

    @property
    def is_fastswitch(self) -> bool:
        return self.mode is SwitchMode.FASTSWITCH

    @property
    def block_size_for_mode(self) -> int:
        """Baseline uses vLLM's 16-token blocks whatever was configured."""
        return self.block_size if self.is_fastswitch else 16

    def compute_threads(self) -> int:
        if self.num_compute_threads is not None:
            return self.num_compute_threads
        num_cores = os.cpu_count() or 1
        return max(1, num_cores - 1) if self.is_fastswitch else num_cores
