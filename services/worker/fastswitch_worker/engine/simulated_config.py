"""SimulatedEngineConfig: what stands in for the model and the GPU when a worker runs the
simulated engine (`fastswitch worker --simulate`), each setting declared once (flag,
environment variable, default, help: fastswitch.settings).

The defaults model one GPU serving Llama-3-8B: 128 KiB of KV per token (bf16), copies at 25 GB/s
each way (PCIe 4.0 x16), 20 ms per decode step.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastswitch.settings import setting

# Llama-3-8B in bf16: 32 layers x 8 kv heads x head_dim 128 x (K, V) x 2 bytes.
LLAMA3_8B_KV_BYTES_PER_TOKEN = 128 << 10
# The byte tokenizer's ids (0-255) plus BOS 256 and EOS 257, with room to spare: the "tiny"
# preset's vocabulary, so a frontend or scheduler with `--model tiny` tokenizes alike.
DEFAULT_VOCAB_SIZE = 384
MIN_VOCAB_SIZE = 256  # the byte tokenizer's ids


@dataclass(frozen=True)
class SimulatedEngineConfig:
    """Simulated engine: modelled step and copy times instead of a model (with --simulate)."""

    simulated_step_ms: float = setting(20.0, help=(
        "with --simulate: milliseconds one engine step that computes anything takes (slept, "
        "not spun: a simulated worker costs almost no CPU)"))
    simulated_kv_tokens: int = setting(65536, help=(
        "with --simulate: tokens of KV the simulated GPU holds (blocks: this / --block-size)"))
    simulated_host_kv_tokens: int = setting(262144, help=(
        "with --simulate: tokens of KV host memory holds for swapped-out and reusable KV"))
    simulated_kv_bytes_per_token: int = setting(LLAMA3_8B_KV_BYTES_PER_TOKEN, help=(
        "with --simulate: bytes of KV per token (the default is Llama-3-8B's in bf16); with "
        "--simulated-copy-gb-per-s it sets how long a swap takes"))
    simulated_copy_gb_per_s: float = setting(25.0, metavar="GB_PER_S", help=(
        "with --simulate: GB/s of a copy between GPU and host memory, each direction on its "
        "own (one copy at a time per direction, as the real copy threads do)"))
    simulated_vocab_size: int = setting(DEFAULT_VOCAB_SIZE, help=(
        "with --simulate: the vocabulary the worker announces (byte tokenizer: ids 0-255, "
        "BOS 256 and EOS 257 when it has room); generated tokens are printable ASCII"))
    simulated_answer_tokens: int = setting(0, help=(
        "with --simulate: every answer ends with EOS as its n-th generated token, unless the "
        "request ignores EOS (0: never; requests run to max_tokens)"))

    def __post_init__(self) -> None:
        if not self.simulated_step_ms >= 0:
            raise ValueError(f"simulated_step_ms must be >= 0, got {self.simulated_step_ms}")
        if self.simulated_kv_tokens <= 0 or self.simulated_host_kv_tokens < 0:
            raise ValueError("simulated_kv_tokens must be > 0 and simulated_host_kv_tokens >= 0")
        if self.simulated_kv_bytes_per_token <= 0:
            raise ValueError("simulated_kv_bytes_per_token must be > 0, got "
                             f"{self.simulated_kv_bytes_per_token}")
        if not self.simulated_copy_gb_per_s > 0:
            raise ValueError(f"simulated_copy_gb_per_s must be > 0, got {self.simulated_copy_gb_per_s}")
        if self.simulated_vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(f"simulated_vocab_size must be >= {MIN_VOCAB_SIZE} (the byte "
                             f"tokenizer's ids), got {self.simulated_vocab_size}")
        if self.simulated_answer_tokens < 0:
            raise ValueError(f"simulated_answer_tokens must be >= 0, got {self.simulated_answer_tokens}")

    @property
    def copy_bytes_per_s(self) -> float:
        return self.simulated_copy_gb_per_s * 1e9
