"""Preset model shapes: what each one promises."""

from __future__ import annotations

import pytest
import torch

from fastswitch_worker.engine.model_config import ModelConfigError
from fastswitch_worker.engine.presets import get_preset, preset_names


def test_bench_preset_has_llama3_8b_kv_bytes_per_token_in_bf16() -> None:
    bench, real = get_preset("bench-8b-kv"), get_preset("llama3-8b")
    assert bench.kv_bytes_per_token(torch.bfloat16) == 128 * 1024
    assert bench.kv_bytes_per_token(torch.bfloat16) == real.kv_bytes_per_token(torch.bfloat16)
    assert bench.torch_dtype == torch.bfloat16


def test_bench_preset_is_far_cheaper_to_run_than_llama3_8b() -> None:
    def num_matmul_weights(name: str) -> int:
        c = get_preset(name)
        q_and_o = 2 * c.hidden_size * c.num_attention_heads * c.head_dim
        k_and_v = 2 * c.hidden_size * c.num_kv_heads * c.head_dim
        mlp = 3 * c.hidden_size * c.intermediate_size
        return c.num_layers * (q_and_o + k_and_v + mlp) + c.hidden_size * c.vocab_size

    assert num_matmul_weights("bench-8b-kv") * 100 < num_matmul_weights("llama3-8b")


def test_llama3_8b_preset_has_the_real_shape() -> None:
    c = get_preset("llama3-8b")
    shape = (c.vocab_size, c.hidden_size, c.intermediate_size, c.num_layers)
    assert shape == (128256, 4096, 14336, 32)
    assert (c.num_attention_heads, c.num_kv_heads, c.head_dim) == (32, 8, 128)


def test_tiny_preset_vocabulary_fits_the_byte_tokenizer() -> None:
    tiny = get_preset("tiny")
    assert tiny.vocab_size >= 300
    assert tiny.bos_token_id == 256 and tiny.eos_token_ids == (257,)


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(ModelConfigError, match="tiny"):
        get_preset("llama-70b")
    assert set(preset_names()) == {"tiny", "llama3-8b", "bench-8b-kv", "bench-8b-kv-cpu"}


def test_the_cpu_bench_preset_moves_llama3_8b_kv_bytes_per_token() -> None:
    cpu, real = get_preset("bench-8b-kv-cpu"), get_preset("llama3-8b")
    assert cpu.kv_bytes_per_token(cpu.torch_dtype) == real.kv_bytes_per_token(real.torch_dtype)
