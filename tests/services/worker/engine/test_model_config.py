"""ModelConfig.from_hf_config: what it accepts, what it rejects and how it reads RoPE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fastswitch_worker.engine.model_config import Llama3RopeScaling, ModelConfig, ModelConfigError
from fastswitch_worker.engine.models.rotary import compute_inv_freq

# A transformers-4.x style Llama-3.1-8B config.json (rope_theta + rope_scaling, torch_dtype).
LLAMA31_8B_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu",
    "torch_dtype": "bfloat16",
}


def with_changes(**changes: Any) -> dict[str, Any]:
    return {**LLAMA31_8B_CONFIG, **changes}


def test_llama31_config_parses_with_llama3_rope_scaling_and_eos_list() -> None:
    config = ModelConfig.from_hf_config(LLAMA31_8B_CONFIG)
    assert config.architecture == "llama"
    assert config.head_dim == 128
    assert config.num_kv_heads == 8
    assert config.rope_theta == 500000.0
    assert config.rope_scaling == Llama3RopeScaling(8.0, 1.0, 4.0, 8192)
    assert config.eos_token_ids == (128001, 128008, 128009)
    assert config.bos_token_id == 128000
    assert config.torch_dtype == torch.bfloat16
    assert config.attention_bias is False


def test_kv_bytes_per_token_counts_k_and_v_of_every_layer() -> None:
    config = ModelConfig.from_hf_config(LLAMA31_8B_CONFIG)
    assert config.kv_bytes_per_token(torch.bfloat16) == 2 * 32 * 8 * 128 * 2 == 128 * 1024
    assert config.kv_bytes_per_token(torch.float32) == 256 * 1024


def test_llama3_inverse_frequencies_match_transformers_at_real_scale() -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_config = LlamaConfig(
        hidden_size=4096,
        num_attention_heads=32,
        max_position_embeddings=131072,
        rope_parameters={**LLAMA31_8B_CONFIG["rope_scaling"], "rope_theta": 500000.0},
    )
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, torch.device("cpu"))
    ours = compute_inv_freq(ModelConfig.from_hf_config(LLAMA31_8B_CONFIG), torch.device("cpu"))
    assert torch.equal(ours, expected)


def test_transformers5_saved_configs_parse(
    hf_tiny_llama3_rope_dir: Path, hf_tiny_llama_tied_dir: Path, hf_tiny_qwen2_dir: Path
) -> None:
    def read(directory: Path) -> ModelConfig:
        return ModelConfig.from_hf_config(json.loads((directory / "config.json").read_text()))

    llama3 = read(hf_tiny_llama3_rope_dir)
    assert llama3.rope_scaling == Llama3RopeScaling(8.0, 1.0, 4.0, 32)
    assert llama3.rope_theta == 500000.0
    tied = read(hf_tiny_llama_tied_dir)
    assert (tied.head_dim, tied.tie_word_embeddings, tied.o_proj_bias) == (24, True, True)
    qwen2 = read(hf_tiny_qwen2_dir)
    assert (qwen2.architecture, qwen2.attention_bias, qwen2.o_proj_bias) == ("qwen2", True, False)
    assert qwen2.eos_token_ids == (2,) and qwen2.bos_token_id == 1


def test_model_type_is_used_when_architectures_is_absent() -> None:
    hf_config = with_changes(model_type="qwen2", eos_token_id=2)
    del hf_config["architectures"]
    assert ModelConfig.from_hf_config(hf_config).architecture == "qwen2"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "unsupported architecture GPT2LMHeadModel"),
        ({"num_key_value_heads": 5}, "multiple of num_kv_heads"),
        ({"num_attention_heads": 30}, "not divisible by num_attention_heads"),
        ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "unsupported rope type 'linear'"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "unsupported rope type 'yarn'"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "lacks 'low_freq_factor'"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"layer_types": ["sliding_attention"] * 32}, "sliding_attention"),
        ({"eos_token_id": 200000}, "outside the vocabulary"),
        ({"torch_dtype": "int8"}, "unsupported dtype"),
        ({"hidden_size": None}, "non-integer"),
    ],
)
def test_unsupported_or_inconsistent_configs_are_rejected_clearly(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelConfigError, match=message):
        ModelConfig.from_hf_config(with_changes(**changes))


def test_missing_required_field_is_named() -> None:
    hf_config = dict(LLAMA31_8B_CONFIG)
    del hf_config["intermediate_size"]
    with pytest.raises(ModelConfigError, match="intermediate_size"):
        ModelConfig.from_hf_config(hf_config)


def test_qwen2_sliding_window_is_rejected() -> None:
    hf_config = with_changes(architectures=["Qwen2ForCausalLM"], use_sliding_window=True)
    with pytest.raises(ModelConfigError, match="sliding_window"):
        ModelConfig.from_hf_config(hf_config)


def test_model_config_errors_are_value_errors() -> None:
    assert issubclass(ModelConfigError, ValueError)
