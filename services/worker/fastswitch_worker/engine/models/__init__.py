"""Model implementations, keyed by ModelConfig.architecture."""

from __future__ import annotations

from fastswitch_worker.engine.model_config import ModelConfig, ModelConfigError
from fastswitch_worker.engine.models.llama import CausalLM

# Qwen2 is Llama with q/k/v bias; ModelConfig.attention_bias carries the difference.
MODEL_CLASSES: dict[str, type[CausalLM]] = {"llama": CausalLM, "qwen2": CausalLM}


def build_model(config: ModelConfig) -> CausalLM:
    """A new model for `config` with freshly initialised parameters on the current default device.

    Construct under `torch.device("meta")` to skip initialisation when weights are loaded next.
    """
    model_class = MODEL_CLASSES.get(config.architecture)
    if model_class is None:
        raise ModelConfigError(f"no model implementation for architecture {config.architecture!r}")
    return model_class(config)


__all__ = ["MODEL_CLASSES", "CausalLM", "build_model"]
