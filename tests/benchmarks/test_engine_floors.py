"""The GPU step floors engine_throughput.py --device cuda prints beside its timings (pure)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from fastswitch_worker.engine.loader import load_model

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def floors(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS_DIR))
    return importlib.import_module("engine_floors")


def test_llama3_8b_decode_is_memory_bound_and_long_prefill_compute_bound(floors) -> None:
    shape = floors.ModelShape(
        num_weight_bytes=16_060_522_496, num_embedding_bytes=1_050_673_152, hidden_bytes=8192,
        num_matmul_params=6_979_321_856, num_lm_head_params=525_336_576, num_layers=32,
        num_heads=32, head_dim=128, kv_bytes_per_token=131_072)
    h200 = dict(hbm_gbps=4800.0, bf16_tflops=989.0)
    decode = floors.step_floors_ms(shape, query_lens=[1] * 32, context_lens=[512] * 32,
                                   num_sampled=32, **h200)
    # 15.0 GB of weights + 32 x 512 x 128 KiB of KV at 4.8 TB/s.
    assert decode["read_bytes"] == 16_060_522_496 - 1_050_673_152 + 32 * 8192 + 32 * 512 * 131_072
    assert decode["memory_floor_ms"] == pytest.approx(3.574, abs=0.001)
    assert decode["floor_ms"] == decode["memory_floor_ms"] > decode["compute_floor_ms"]
    prefill = floors.step_floors_ms(shape, query_lens=[2048], context_lens=[2048],
                                    num_sampled=1, **h200)
    pairs = 2048 * 2049 // 2  # causal: query j sees j + 1 keys
    expected_flops = 2 * 6_979_321_856 * 2048 + 2 * 525_336_576 + 4 * 32 * 32 * 128 * pairs
    assert prefill["flops"] == expected_flops
    assert prefill["floor_ms"] == prefill["compute_floor_ms"] > prefill["memory_floor_ms"]


def test_a_chunk_over_cached_context_sees_the_cache_and_its_causal_part(floors) -> None:
    shape = floors.ModelShape(num_weight_bytes=0, num_embedding_bytes=0, hidden_bytes=0,
                              num_matmul_params=0, num_lm_head_params=0, num_layers=1,
                              num_heads=1, head_dim=1, kv_bytes_per_token=1)
    step = floors.step_floors_ms(shape, query_lens=[3], context_lens=[10], num_sampled=0,
                                 hbm_gbps=1.0, bf16_tflops=1.0)
    assert step["flops"] == 4 * (3 * 7 + 6)  # 7 cached keys each, then 1 + 2 + 3
    assert step["read_bytes"] == 10


def test_model_shape_counts_the_tiny_models_parameters(floors) -> None:
    net, _ = load_model("tiny", load_format="dummy")
    shape = floors.ModelShape.of(net, kv_bytes_per_token=1024)
    num_params = sum(p.numel() for p in net.parameters())
    assert shape.num_weight_bytes == 4 * num_params
    norms = sum(p.numel() for n, p in net.named_parameters() if "norm" in n)
    embedding = net.model.embed_tokens.weight.numel()
    assert shape.num_matmul_params + shape.num_lm_head_params == num_params - norms - (
        0 if net.lm_head.weight is net.model.embed_tokens.weight else embedding)
