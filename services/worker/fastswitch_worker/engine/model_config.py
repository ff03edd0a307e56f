"""The shape of a decoder-only model, parsed from a Hugging Face `config.json` and validated.

Only what the engine implements is accepted: Llama-family and Qwen2 models with plain or
Llama-3-scaled RoPE, SiLU-gated MLPs and full (not sliding-window) attention. Anything else is
rejected here with a `ModelConfigError`, before any weights are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

Architecture = Literal["llama", "qwen2"]

# Hugging Face class names (config.json "architectures") and model types we can run.
_ARCHITECTURE_BY_HF_CLASS: dict[str, Architecture] = {
    "LlamaForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
}
_ARCHITECTURE_BY_MODEL_TYPE: dict[str, Architecture] = {"llama": "llama", "qwen2": "qwen2"}

_DTYPE_BY_NAME: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class ModelConfigError(ValueError):
    """A model configuration is malformed or describes a model the engine cannot run."""


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """Map "bfloat16" / "bf16" / torch.bfloat16 (etc.) to a floating torch dtype."""
    if isinstance(name, torch.dtype):
        if name not in _DTYPE_BY_NAME.values():
            raise ModelConfigError(f"unsupported dtype {name}; use float32, bfloat16 or float16")
        return name
    key = str(name).lower().removeprefix("torch.")
    if key not in _DTYPE_BY_NAME:
        raise ModelConfigError(
            f"unsupported dtype {name!r}; known: {', '.join(sorted(_DTYPE_BY_NAME))}"
        )
    return _DTYPE_BY_NAME[key]


@dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama 3.1-style frequency-dependent RoPE scaling ("rope_type": "llama3")."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.low_freq_factor <= 0:
            raise ModelConfigError(f"llama3 rope scaling needs positive factors, got {self}")
        if self.high_freq_factor <= self.low_freq_factor:
            raise ModelConfigError(
                "llama3 rope scaling needs high_freq_factor > low_freq_factor, got "
                f"{self.high_freq_factor} <= {self.low_freq_factor}"
            )
        if self.original_max_position_embeddings <= 0:
            raise ModelConfigError("llama3 rope scaling needs original_max_position_embeddings > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Everything the engine needs to build the network and size the KV cache.

    `head_dim` may differ from hidden_size / num_attention_heads (config.json "head_dim");
    q/k/v project hidden_size -> heads * head_dim and o_proj projects back.
    """

    architecture: Architecture
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: Llama3RopeScaling | None = None
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    # Bias on q/k/v projections (always on for Qwen2). Llama's flag also puts one on o_proj.
    attention_bias: bool = False
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    torch_dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.architecture not in _ARCHITECTURE_BY_MODEL_TYPE.values():
            raise ModelConfigError(f"unsupported architecture {self.architecture!r}")
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_attention_heads",
            "num_kv_heads",
            "head_dim",
            "max_position_embeddings",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.num_attention_heads % self.num_kv_heads != 0:
            raise ModelConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads}) for grouped-query attention"
            )
        if self.head_dim % 2 != 0:
            raise ModelConfigError(
                f"head_dim must be even for rotary embeddings, got {self.head_dim}"
            )
        if self.rms_norm_eps <= 0 or self.rope_theta <= 0:
            raise ModelConfigError("rms_norm_eps and rope_theta must be positive")
        special_ids = (
            *self.eos_token_ids,
            *(() if self.bos_token_id is None else (self.bos_token_id,)),
        )
        for token_id in special_ids:
            if not 0 <= token_id < self.vocab_size:
                raise ModelConfigError(
                    f"special token id {token_id} is outside the vocabulary [0, {self.vocab_size})"
                )
        parse_dtype(self.torch_dtype)

    @property
    def o_proj_bias(self) -> bool:
        """Whether o_proj has a bias: Llama ties it to attention_bias, Qwen2 never has one."""
        return self.attention_bias and self.architecture == "llama"

    def kv_bytes_per_token(self, dtype: torch.dtype) -> int:
        """Bytes of K and V one token occupies across all layers in a cache of `dtype`."""
        element_bytes = torch.empty((), dtype=dtype).element_size()
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * element_bytes

    @classmethod
    def from_hf_config(cls, hf_config: Mapping[str, Any]) -> ModelConfig:
        """Parse a Hugging Face config.json dict (transformers 4.x or 5.x layout); pure."""
        architecture = _parse_architecture(hf_config)
        _reject_unsupported_features(hf_config, architecture)
        try:
            hidden_size = int(hf_config["hidden_size"])
            num_attention_heads = int(hf_config["num_attention_heads"])
            num_layers = int(hf_config["num_hidden_layers"])
            vocab_size = int(hf_config["vocab_size"])
            intermediate_size = int(hf_config["intermediate_size"])
        except KeyError as exc:
            raise ModelConfigError(f"config.json lacks required field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise ModelConfigError(f"config.json has a non-integer size field: {exc}") from None
        num_kv_heads = int(hf_config.get("num_key_value_heads") or num_attention_heads)
        head_dim = hf_config.get("head_dim")
        if head_dim is None:
            if num_attention_heads <= 0 or hidden_size % num_attention_heads != 0:
                raise ModelConfigError(
                    f"hidden_size ({hidden_size}) is not divisible by num_attention_heads "
                    f"({num_attention_heads}) and config.json gives no head_dim"
                )
            head_dim = hidden_size // num_attention_heads
        rope_theta, rope_scaling = _parse_rope(hf_config)
        max_position_embeddings = int(hf_config.get("max_position_embeddings") or 4096)
        dtype_name = hf_config.get("torch_dtype") or hf_config.get("dtype") or "float32"
        return cls(
            architecture=architecture,
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_layers=num_layers,
            num_attention_heads=num_attention_heads,
            num_kv_heads=num_kv_heads,
            head_dim=int(head_dim),
            rms_norm_eps=float(hf_config.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=max_position_embeddings,
            tie_word_embeddings=bool(hf_config.get("tie_word_embeddings", False)),
            attention_bias=architecture == "qwen2" or bool(hf_config.get("attention_bias", False)),
            bos_token_id=_parse_optional_id(hf_config.get("bos_token_id")),
            eos_token_ids=_parse_id_list(hf_config.get("eos_token_id")),
            torch_dtype=parse_dtype(dtype_name),
        )


def _parse_architecture(hf_config: Mapping[str, Any]) -> Architecture:
    hf_classes = hf_config.get("architectures") or []
    for hf_class in hf_classes:
        if hf_class in _ARCHITECTURE_BY_HF_CLASS:
            return _ARCHITECTURE_BY_HF_CLASS[hf_class]
    if hf_classes:
        raise ModelConfigError(
            f"unsupported architecture {', '.join(map(str, hf_classes))}; supported: "
            f"{', '.join(_ARCHITECTURE_BY_HF_CLASS)}"
        )
    model_type = hf_config.get("model_type")
    if model_type in _ARCHITECTURE_BY_MODEL_TYPE:
        return _ARCHITECTURE_BY_MODEL_TYPE[model_type]
    raise ModelConfigError(
        f"unsupported model_type {model_type!r} (no 'architectures' in config.json); "
        f"supported: {', '.join(_ARCHITECTURE_BY_MODEL_TYPE)}"
    )


def _reject_unsupported_features(hf_config: Mapping[str, Any], architecture: Architecture) -> None:
    """Fail loudly on options that would silently change the math if ignored."""
    hidden_act = hf_config.get("hidden_act", "silu")
    if hidden_act != "silu":
        raise ModelConfigError(f"unsupported hidden_act {hidden_act!r}; only 'silu' is implemented")
    if hf_config.get("mlp_bias"):
        raise ModelConfigError("unsupported mlp_bias=true; MLP projections have no bias here")
    if architecture == "qwen2" and hf_config.get("use_sliding_window"):
        raise ModelConfigError(
            "unsupported use_sliding_window=true; only full attention is implemented"
        )
    layer_types = hf_config.get("layer_types") or []
    other_types = sorted({t for t in layer_types if t != "full_attention"})
    if other_types:
        raise ModelConfigError(f"unsupported layer types {other_types}; only full_attention")


def _parse_rope(hf_config: Mapping[str, Any]) -> tuple[float, Llama3RopeScaling | None]:
    """Read RoPE from `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (4.x)."""
    params = hf_config.get("rope_parameters") or hf_config.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise ModelConfigError(f"rope parameters must be an object, got {params!r}")
    if params and all(isinstance(v, Mapping) for v in params.values()):
        raise ModelConfigError("per-layer-type rope parameters are not supported")
    rope_theta = float(params.get("rope_theta") or hf_config.get("rope_theta") or 10000.0)
    rope_type = params.get("rope_type") or params.get("type") or "default"
    partial_rotary_factor = params.get(
        "partial_rotary_factor", hf_config.get("partial_rotary_factor", 1.0)
    )
    if partial_rotary_factor != 1.0:
        raise ModelConfigError(f"unsupported partial_rotary_factor {partial_rotary_factor}")
    if rope_type == "default":
        return rope_theta, None
    if rope_type != "llama3":
        raise ModelConfigError(
            f"unsupported rope type {rope_type!r}; supported: 'default', 'llama3'"
        )
    original_max_positions = params.get("original_max_position_embeddings") or hf_config.get(
        "max_position_embeddings"
    )
    if not original_max_positions:
        raise ModelConfigError("llama3 rope scaling needs original_max_position_embeddings")
    try:
        scaling = Llama3RopeScaling(
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(original_max_positions),
        )
    except KeyError as exc:
        raise ModelConfigError(f"llama3 rope scaling lacks {exc.args[0]!r}") from None
    return rope_theta, scaling


def _parse_optional_id(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, list):
        return int(value[0]) if value else None
    return int(value)


def _parse_id_list(value: Any) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(dict.fromkeys(int(v) for v in value))
    return (int(value),)
