"""EngineConfig: every knob of one worker engine, validated in one place, each declared once
(flag, environment variable, default, help: fastswitch.settings)."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

from fastswitch.settings import setting


class SwitchMode(enum.Enum):
    FASTSWITCH = "fastswitch"  # block groups, async copies on their own threads, KV reuse
    BASELINE = "baseline"  # vLLM v0: single blocks, per-block/layer/KV sync copies, no reuse


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings: the model, KV memory and batching of one worker."""

    model: str = setting("tiny", help=(
        "checkpoint directory (config.json + *.safetensors) or preset name (dummy weights)"))
    load_format: str = setting("auto", choices=("auto", "safetensors", "dummy"), help=(
        "dummy: random weights in the checkpoint's architecture"))
    # auto: the checkpoint's dtype (fp16 becomes fp32 on CPU) | float32 | bfloat16 | float16
    dtype: str = setting("auto", help=(
        "float32, bfloat16 or float16; auto: the checkpoint's (float16 becomes float32 on CPU)"))
    device: str = setting("auto", help="cpu, cuda or cuda:N; auto: cuda when there is one")
    seed: int = setting(0, help="seed of dummy weights and of sampling without a request seed")
    mode: SwitchMode = setting(SwitchMode.FASTSWITCH, help=(
        "fastswitch: block groups, asynchronous copies, KV reuse; baseline: switches as vLLM "
        "v0 does, for comparisons"))
    block_size: int = setting(16, help="tokens per KV block (the baseline always uses 16)")
    # GPU pool size: a fraction of free CUDA memory, or an explicit byte budget (CPU default).
    gpu_memory_fraction: float = setting(0.85, help=(
        "fraction of free GPU memory the KV cache takes (when --kv-cache-bytes is not given)"))
    kv_cache_bytes: int | None = setting(None, metavar="BYTES", default_text=(
        "--gpu-memory-fraction of free memory on CUDA, 256 MiB on CPU"), help=(
        "bytes of KV cache on the compute device"))
    host_kv_bytes: int = setting(1 << 30, metavar="BYTES", help=(
        "bytes of (pinned) host memory for swapped-out and reusable KV"))
    max_group_blocks: int = setting(64, help="blocks in one physically contiguous block group, at most")
    # FastSwitch mode: keep host copies valid across swap-ins and conversation turns.
    kv_reuse: bool = setting(True, help=(
        "fastswitch mode: keep host copies valid across swap-ins and conversation turns"))
    max_num_batched_tokens: int = setting(512, help="tokens in one engine step, at most")
    max_num_seqs: int = setting(64, help="requests in one engine step, at most")
    max_model_len: int | None = setting(None, default_text="the model's max_position_embeddings",
                                        help="tokens of one request (prompt + output), at most")
    # Adaptive swap-in: wait instead of overlapping when this small and the batch this small.
    blocking_swap_in_max_blocks: int = setting(8, help=(
        "a swap-in of at most this many blocks into a batch of at most "
        "--blocking-swap-in-max-batch requests is waited for instead of overlapped"))
    blocking_swap_in_max_batch: int = setting(2, help="see --blocking-swap-in-max-blocks")
    # Intra-op threads for compute; the default leaves one core for the copy threads, in both
    # modes alike: comparisons between the modes (fastswitch up, bench) then differ only in
    # how they switch, not in how many cores compute.
    num_compute_threads: int | None = setting(None, default_text=(
        "every core less one (for the copy threads), in both modes"), help=(
        "torch intra-op threads for compute"))

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
        return max(1, (os.cpu_count() or 1) - 1)
