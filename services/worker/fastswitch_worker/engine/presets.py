"""Named model shapes that load with dummy (random, seeded) weights; no checkpoint needed.

- "tiny": a few small layers for the local demo (`fastswitch up`) and tests. Its vocabulary
  holds the 256 byte ids of the byte tokenizer plus BOS (256) and EOS (257). Its weights are
  random, like every preset's; only its output layer is shaped (`shape_demo_output`) so that
  greedy decoding picks printable ASCII and never EOS: the demo's answer is deterministic,
  visible noise instead of an empty line.
- "llama3-8b": the real Meta-Llama-3-8B(-Instruct) shape, for GPU runs without the weights.
- "bench-8b-kv": context switches cost what they cost on Llama-3-8B, compute does not. Its KV
  footprint per token equals Llama-3-8B's in bf16 (32 layers x 8 kv heads x head_dim 128 x K,V
  x 2 bytes = 128 KiB), so swap plans, copy sizes and host-pool pressure are those of the real
  model, while hidden 256, a 512-wide MLP and a 512-token vocabulary keep a forward pass cheap
  enough for a 2-core CPU. Its 8 query heads of dim 128 project 256 -> 1024 and back (head_dim
  need not be hidden / heads). Weights default to bf16 so "auto" gives the 128 KiB/token cache.
- "bench-8b-kv-cpu": the same 128 KiB of KV per token for CPU runs, as 16 layers in fp32
  (CPUs compute bf16 several times slower than fp32, and halving the layers halves the
  compute while the bytes a context switch moves stay those of Llama-3-8B).
"""

from __future__ import annotations

from types import MappingProxyType

import torch

from fastswitch_worker.engine.model_config import ModelConfig, ModelConfigError

# Ids the byte tokenizer uses for its specials; the small presets reserve them.
_BYTE_BOS_ID = 256
_BYTE_EOS_ID = 257

PRESETS: MappingProxyType[str, ModelConfig] = MappingProxyType(
    {
        "tiny": ModelConfig(
            architecture="llama",
            vocab_size=384,
            hidden_size=128,
            intermediate_size=256,
            num_layers=4,
            num_attention_heads=4,
            num_kv_heads=2,
            head_dim=32,
            rms_norm_eps=1e-5,
            rope_theta=10000.0,
            max_position_embeddings=4096,
            bos_token_id=_BYTE_BOS_ID,
            eos_token_ids=(_BYTE_EOS_ID,),
            torch_dtype=torch.float32,
        ),
        "llama3-8b": ModelConfig(
            architecture="llama",
            vocab_size=128256,
            hidden_size=4096,
            intermediate_size=14336,
            num_layers=32,
            num_attention_heads=32,
            num_kv_heads=8,
            head_dim=128,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            max_position_embeddings=8192,
            bos_token_id=128000,
            # <|end_of_text|> and <|eot_id|> (the Instruct model's generation_config).
            eos_token_ids=(128001, 128009),
            torch_dtype=torch.bfloat16,
        ),
        "bench-8b-kv": ModelConfig(
            architecture="llama",
            vocab_size=512,
            hidden_size=256,
            intermediate_size=512,
            num_layers=32,
            num_attention_heads=8,
            num_kv_heads=8,
            head_dim=128,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            max_position_embeddings=8192,
            bos_token_id=_BYTE_BOS_ID,
            eos_token_ids=(_BYTE_EOS_ID,),
            torch_dtype=torch.bfloat16,
        ),
        "bench-8b-kv-cpu": ModelConfig(
            architecture="llama",
            vocab_size=512,
            hidden_size=256,
            intermediate_size=512,
            num_layers=16,
            num_attention_heads=8,
            num_kv_heads=8,
            head_dim=128,
            rms_norm_eps=1e-5,
            rope_theta=500000.0,
            max_position_embeddings=8192,
            bos_token_id=_BYTE_BOS_ID,
            eos_token_ids=(_BYTE_EOS_ID,),
            torch_dtype=torch.float32,
        ),
    }
)


# Presets whose dummy output layer is restricted to printable ASCII (see shape_demo_output).
DEMO_PRESETS = frozenset({"tiny"})
_PRINTABLE_BYTE_IDS = range(0x20, 0x7F)


@torch.no_grad()
def shape_demo_output(lm_head_weight: torch.Tensor) -> None:
    """Mutates: zeroes every output row but printable ASCII bytes, so their logits are 0 while
    the printable ones stay random; the largest of ~95 random logits is above 0, so greedy
    decoding emits printable text and no special token. The weights stay random: the text is
    noise, only visibly so. lm_head_weight: [vocab_size, hidden_size]."""
    keep = torch.zeros(lm_head_weight.shape[0], dtype=torch.bool, device=lm_head_weight.device)
    keep[_PRINTABLE_BYTE_IDS.start:_PRINTABLE_BYTE_IDS.stop] = True
    lm_head_weight[~keep] = 0


def preset_names() -> tuple[str, ...]:
    """Names accepted by `get_preset` (and by `load_model` in place of a directory)."""
    return tuple(PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The named preset's config; raises ModelConfigError for an unknown name."""
    if name not in PRESETS:
        raise ModelConfigError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
