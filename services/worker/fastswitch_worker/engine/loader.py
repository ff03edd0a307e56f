"""Build a model from a local checkpoint directory or a named preset. Never downloads anything.

A checkpoint directory has the Hugging Face layout: config.json plus model.safetensors, or
shards listed in model.safetensors.index.json. Presets (and load_format="dummy") get seeded
random weights with a small std, so logits stay in a sane range.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from fastswitch_worker.engine.model_config import ModelConfig, ModelConfigError, parse_dtype
from fastswitch_worker.engine.models import CausalLM, build_model
from fastswitch_worker.engine.models.llama import RMSNorm
from fastswitch_worker.engine.presets import DEMO_PRESETS, PRESETS, shape_demo_output

LoadFormat = Literal["auto", "safetensors", "dummy"]

CONFIG_FILE = "config.json"
SINGLE_WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
DUMMY_INIT_STD = 0.02
# Checkpoint tensors that are derived, not learned; older Llama checkpoints stored them.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class ModelLoadError(ValueError):
    """A model cannot be loaded; the message says which file or tensor and why."""


def read_model_config(directory: str | os.PathLike[str]) -> ModelConfig:
    """Parse and validate `directory`/config.json; raises ModelLoadError."""
    config_path = Path(directory) / CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(f"{config_path} not found: a model directory needs a config.json")
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot parse {config_path}: {exc}") from exc
    if not isinstance(hf_config, dict):
        raise ModelLoadError(f"{config_path} must hold a JSON object")
    try:
        return ModelConfig.from_hf_config(hf_config)
    except ModelConfigError as exc:
        raise ModelLoadError(f"{config_path}: {exc}") from exc


def read_model_dtype(model: str | os.PathLike[str]) -> torch.dtype | None:
    """The dtype a preset or checkpoint directory declares; None when neither is readable
    (load_model then reports the problem)."""
    try:
        if str(model) in PRESETS:
            return PRESETS[str(model)].torch_dtype
        return read_model_config(model).torch_dtype
    except (ModelLoadError, ValueError):
        return None


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when there is one, else the CPU; any other name is taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def weights_dtype(dtype: str, model: str | os.PathLike[str],
                  device: torch.device) -> torch.dtype | str:
    """The dtype to load `model` in: "auto" keeps the checkpoint's, except fp16 on CPU
    (poorly supported there), which becomes fp32."""
    if dtype != "auto":
        return parse_dtype(dtype)
    if device.type == "cpu" and read_model_dtype(model) is torch.float16:
        return torch.float32
    return "auto"


def load_model(
    model: str | os.PathLike[str],
    *,
    dtype: torch.dtype | str = "auto",
    device: str | torch.device = "cpu",
    load_format: LoadFormat = "auto",
    seed: int = 0,
) -> tuple[CausalLM, ModelConfig]:
    """Load `model` (a checkpoint directory or a preset name) onto `device`, in eval mode.

    dtype "auto" uses the config's torch_dtype. The returned config's torch_dtype is the dtype
    the weights were loaded in (what the KV cache should use). Raises ModelLoadError.
    """
    if load_format not in ("auto", "safetensors", "dummy"):
        raise ModelLoadError(f"unknown load_format {load_format!r}; use auto, safetensors or dummy")
    source = os.fspath(model)
    directory = Path(source)
    if directory.is_dir():
        config = read_model_config(directory)
        use_dummy = load_format == "dummy"
    elif source in PRESETS:
        if load_format == "safetensors":
            raise ModelLoadError(f"preset {source!r} has no weights to load; use load_format dummy")
        config = PRESETS[source]
        use_dummy = True
    elif directory.exists():
        raise ModelLoadError(f"{source} is not a directory (expected a checkpoint directory)")
    else:
        raise ModelLoadError(
            f"model {source!r} is neither an existing directory nor a preset "
            f"(presets: {', '.join(PRESETS)})"
        )
    try:
        weights_dtype = config.torch_dtype if dtype == "auto" else parse_dtype(dtype)
    except ModelConfigError as exc:
        raise ModelLoadError(str(exc)) from exc
    config = replace(config, torch_dtype=weights_dtype)
    target_device = torch.device(device)

    # Build without initialising (meta), then allocate uninitialised storage on the device.
    with torch.device("meta"):
        net = build_model(config)
    net = net.to(dtype=weights_dtype).to_empty(device=target_device)
    net.tie_weights()  # to_empty replaces parameters one by one, which unties them
    if use_dummy:
        init_dummy_weights(net, seed=seed)
        if source in DEMO_PRESETS:
            shape_demo_output(net.lm_head.weight)
    else:
        load_safetensors_weights(net, directory)
    return net.eval(), config


@torch.no_grad()
def init_dummy_weights(net: CausalLM, *, seed: int) -> None:
    """Seeded random weights (normal, std 0.02; norms 1, biases 0); mutates net.

    Values are drawn in float32 on the parameters' device and cast, so a seed gives the same
    weights in every dtype on a given device type.
    """
    device = next(net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    for module in net.modules():
        if isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
        elif isinstance(module, nn.Linear | nn.Embedding):
            if module is net.lm_head and net.config.tie_word_embeddings:
                continue
            draw = torch.empty(module.weight.shape, dtype=torch.float32, device=device)
            module.weight.copy_(draw.normal_(0.0, DUMMY_INIT_STD, generator=generator))
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()


def _weight_files(directory: Path) -> list[Path]:
    index_path = directory / WEIGHTS_INDEX_FILE
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot parse {index_path}: {exc!r}") from exc
        files = [directory / name for name in sorted(set(weight_map.values()))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ModelLoadError(f"{index_path} lists missing shard files: {', '.join(missing)}")
        return files
    if (directory / SINGLE_WEIGHTS_FILE).is_file():
        return [directory / SINGLE_WEIGHTS_FILE]
    present = sorted(p.name for p in directory.iterdir())
    raise ModelLoadError(
        f"no {SINGLE_WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE} in {directory} (found: "
        f"{', '.join(present) or 'nothing'}); only safetensors checkpoints are supported"
    )


@torch.no_grad()
def load_safetensors_weights(net: CausalLM, directory: str | os.PathLike[str]) -> None:
    """Copy every parameter from the directory's safetensors files, by name; mutates net.

    Raises ModelLoadError on unreadable files, unknown/missing tensors or shape mismatches.
    """
    directory = Path(directory)
    # Deduplicated: a tied lm_head.weight is listed once, as model.embed_tokens.weight.
    params = dict(net.named_parameters())
    is_tied = net.config.tie_word_embeddings
    loaded_names: set[str] = set()
    unexpected_names: list[str] = []
    for path in _weight_files(directory):
        try:
            with safe_open(str(path), framework="pt", device="cpu") as weights:
                for name in weights.keys():
                    if name.endswith(_IGNORED_SUFFIXES) or (is_tied and name == "lm_head.weight"):
                        continue
                    target = params.get(name)
                    if target is None:
                        unexpected_names.append(name)
                        continue
                    tensor = weights.get_tensor(name)
                    _check_tensor(name, tensor, target, path)
                    target.copy_(tensor)
                    loaded_names.add(name)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot read {path} (corrupt or truncated?): {exc}") from exc
    if unexpected_names:
        raise ModelLoadError(
            f"{directory} has tensors this {net.config.architecture} model does not use: "
            f"{_first_few(unexpected_names)}"
        )
    missing_names = sorted(set(params) - loaded_names)
    if missing_names:
        raise ModelLoadError(f"{directory} lacks tensors: {_first_few(missing_names)}")


def _check_tensor(name: str, tensor: torch.Tensor, target: torch.Tensor, path: Path) -> None:
    if tuple(tensor.shape) != tuple(target.shape):
        raise ModelLoadError(
            f"{path.name}: tensor {name} has shape {tuple(tensor.shape)}, the config "
            f"implies {tuple(target.shape)}"
        )
    if not tensor.is_floating_point():
        raise ModelLoadError(f"{path.name}: tensor {name} has non-float dtype {tensor.dtype}")


def _first_few(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} ... ({len(names)} in all)"
