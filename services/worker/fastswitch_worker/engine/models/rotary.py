"""Rotary position embeddings (RoPE), plain or with Llama-3 frequency scaling.

Uses the "rotate half" pairing of Hugging Face Llama/Qwen2 checkpoints: dimension i rotates with
dimension i + head_dim / 2. Frequencies and angles are computed in float32 exactly as the
reference implementation does, so logits match it bit for bit in fp32.
"""

from __future__ import annotations

import math

import torch

from fastswitch_worker.engine.model_config import Llama3RopeScaling, ModelConfig


def compute_inv_freq(config: ModelConfig, device: torch.device) -> torch.Tensor:
    """[head_dim / 2] float32 inverse frequencies, Llama-3-scaled when the config says so."""
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    inv_freq = 1.0 / (config.rope_theta**exponents)
    if config.rope_scaling is not None:
        inv_freq = _apply_llama3_scaling(inv_freq, config.rope_scaling)
    return inv_freq


def _apply_llama3_scaling(inv_freq: torch.Tensor, scaling: Llama3RopeScaling) -> torch.Tensor:
    """Slow down long wavelengths by `factor`, keep short ones, blend smoothly in between."""
    old_context_len = scaling.original_max_position_embeddings
    low_freq_wavelen = old_context_len / scaling.low_freq_factor
    high_freq_wavelen = old_context_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (old_context_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
    return torch.where(is_medium, smoothed, scaled)


class RotaryEmbedding:
    """Computes cos/sin for token positions; holds no parameters (nothing to load or move)."""

    def __init__(self, config: ModelConfig) -> None:
        self._config = config
        self._inv_freq_by_device: dict[torch.device, torch.Tensor] = {}

    def cos_sin(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of each position's angles, [num_tokens, 1, head_dim / 2] in `dtype`.

        Caches the inverse frequencies per device (mutates only that cache).
        """
        inv_freq = self._inv_freq_by_device.get(positions.device)
        if inv_freq is None:
            inv_freq = compute_inv_freq(self._config, positions.device)
            self._inv_freq_by_device[positions.device] = inv_freq
        angles = positions.float()[:, None] * inv_freq[None, :]  # [num_tokens, head_dim / 2]
        return angles.cos().to(dtype)[:, None, :], angles.sin().to(dtype)[:, None, :]


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x ([num_tokens, num_heads, head_dim]) by the angles of its tokens; pure."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
