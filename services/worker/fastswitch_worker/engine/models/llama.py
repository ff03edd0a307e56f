"""Llama-family decoder (Llama 2/3/3.1, Qwen2) over the paged KV cache.

Qwen2 is Llama with a bias on q/k/v; both are one class driven by ModelConfig. Module and
parameter names mirror the Hugging Face checkpoints (`model.layers.N.self_attn.q_proj.weight`,
`lm_head.weight`, ...), so a checkpoint's state dict loads by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastswitch_worker.engine.attention import write_kv
from fastswitch_worker.engine.attention_backends import AttentionBackend, TorchBackend
from fastswitch_worker.engine.attention_metadata import AttentionMetadata
from fastswitch_worker.engine.model_config import ModelConfig
from fastswitch_worker.engine.models.rotary import RotaryEmbedding, apply_rotary


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32 and cast back (as the checkpoints expect)."""

    def __init__(self, hidden_size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden.dtype
        hidden32 = hidden.float()
        variance = hidden32.pow(2).mean(-1, keepdim=True)
        normed = hidden32 * torch.rsqrt(variance + self.eps)
        return self.weight * normed.to(input_dtype)


class Attention(nn.Module):
    """Grouped-query self-attention of one layer; reads and writes its slice of the KV cache."""

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_kv_heads
        self.head_dim = config.head_dim
        q_dim = config.num_attention_heads * config.head_dim
        kv_dim = config.num_kv_heads * config.head_dim
        self.q_proj = nn.Linear(config.hidden_size, q_dim, bias=config.attention_bias)
        self.k_proj = nn.Linear(config.hidden_size, kv_dim, bias=config.attention_bias)
        self.v_proj = nn.Linear(config.hidden_size, kv_dim, bias=config.attention_bias)
        self.o_proj = nn.Linear(q_dim, config.hidden_size, bias=config.o_proj_bias)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
        backend: AttentionBackend,
        plan: object,
    ) -> torch.Tensor:
        """[num_tokens, hidden] -> [num_tokens, hidden]; writes the new K/V into kv_cache."""
        num_tokens = hidden.shape[0]
        query = self.q_proj(hidden).view(num_tokens, self.num_heads, self.head_dim)
        key = self.k_proj(hidden).view(num_tokens, self.num_kv_heads, self.head_dim)
        value = self.v_proj(hidden).view(num_tokens, self.num_kv_heads, self.head_dim)
        query = apply_rotary(query, cos, sin)
        key = apply_rotary(key, cos, sin)
        write_kv(kv_cache, self.layer_idx, key, value, slot_mapping)
        attended = backend.attend(query, key, value, kv_cache, self.layer_idx, plan)
        return self.o_proj(attended.reshape(num_tokens, self.num_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden)) * self.up_proj(hidden))


class DecoderLayer(nn.Module):
    """Pre-norm residual block: attention, then MLP."""

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
        backend: AttentionBackend,
        plan: object,
    ) -> torch.Tensor:
        attended = self.self_attn(
            self.input_layernorm(hidden), cos, sin, kv_cache, slot_mapping, backend, plan
        )
        hidden = hidden + attended
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class DecoderStack(nn.Module):
    """Embedding, layers and final norm; named like the checkpoints' `model.*` prefix."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class CausalLM(nn.Module):
    """A Llama/Qwen2 causal language model that attends through the paged KV cache."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.model = DecoderStack(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.rotary = RotaryEmbedding(config)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share lm_head.weight with the embedding when the config ties them; mutates self.

        Call again after anything that replaces parameters (e.g. `to_empty`).
        """
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def check_kv_cache(self, kv_cache: torch.Tensor) -> None:
        """Raise ValueError unless kv_cache has this model's block-major layout."""
        config = self.config
        if (
            kv_cache.dim() != 6
            or kv_cache.shape[1] != config.num_layers
            or kv_cache.shape[2] != 2
            or kv_cache.shape[4] != config.num_kv_heads
            or kv_cache.shape[5] != config.head_dim
            or not kv_cache.is_contiguous()
        ):
            raise ValueError(
                f"kv_cache must be [num_blocks, num_layers={config.num_layers}, 2, block_size, "
                f"num_kv_heads={config.num_kv_heads}, head_dim={config.head_dim}] and "
                f"contiguous, got {tuple(kv_cache.shape)}"
            )

    @torch.no_grad()
    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: torch.Tensor,
        attn: AttentionMetadata,
        backend: AttentionBackend | None = None,
    ) -> torch.Tensor:
        """Run the new tokens of a flattened batch; returns [num_tokens, hidden] after the final norm.

        input_ids, positions: [num_tokens] int64. Mutates kv_cache: every layer writes the new
        tokens' K/V at attn.slot_mapping before attending. backend: the reference by default.
        """
        self.check_kv_cache(kv_cache)
        backend = backend if backend is not None else TorchBackend()
        plan = backend.plan(attn, kv_cache)
        return self.run_layers(input_ids, positions, kv_cache, attn.slot_mapping, backend, plan)

    @torch.no_grad()
    def run_layers(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_cache: torch.Tensor,
        slot_mapping: torch.Tensor,
        backend: AttentionBackend,
        plan: object,
    ) -> torch.Tensor:
        """forward() with the attention plan already built: only device work, no host sync and
        no Python per token, so a CUDA graph can capture it (cuda_graphs.py). Mutates kv_cache."""
        hidden = self.model.embed_tokens(input_ids)  # [num_tokens, hidden]
        cos, sin = self.rotary.cos_sin(positions, hidden.dtype)
        for layer in self.model.layers:
            hidden = layer(hidden, cos, sin, kv_cache, slot_mapping, backend, plan)
        return self.model.norm(hidden)

    @torch.no_grad()
    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """[n, hidden] -> [n, vocab_size] float32 logits; pure."""
        return self.lm_head(hidden_states).float()
