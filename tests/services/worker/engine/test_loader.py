"""load_model: checkpoints, presets with dummy weights, and every way loading can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fastswitch_worker.engine.attention import AttentionMetadata
from fastswitch_worker.engine.loader import ModelLoadError, load_model
from fastswitch_worker.engine.models import CausalLM


def copy_checkpoint(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def prefill_logits(net: CausalLM, token_ids: list[int], block_size: int = 4) -> torch.Tensor:
    config = net.config
    num_blocks = -(-len(token_ids) // block_size)
    kv_cache = torch.zeros(
        num_blocks, config.num_layers, 2, block_size, config.num_kv_heads, config.head_dim,
        dtype=config.torch_dtype,
    )  # fmt: skip
    attn = AttentionMetadata(
        slot_mapping=torch.arange(len(token_ids)),
        query_start_locs=(0, len(token_ids)),
        context_lens=(len(token_ids),),
        block_tables=(torch.arange(num_blocks),),
    )
    positions = torch.arange(len(token_ids))
    return net.compute_logits(net(torch.tensor(token_ids), positions, kv_cache, attn))


def test_checkpoint_weights_load_by_hugging_face_name(hf_tiny_llama_dir: Path) -> None:
    net, config = load_model(hf_tiny_llama_dir)
    saved = load_file(str(hf_tiny_llama_dir / "model.safetensors"))
    ours = net.state_dict()
    assert set(saved) == set(ours)
    for name, tensor in saved.items():
        assert torch.equal(ours[name], tensor), name
    assert config.torch_dtype == torch.float32
    assert not net.training


def test_sharded_checkpoint_loads_the_same_weights(
    hf_tiny_llama_dir: Path, hf_tiny_llama_sharded_dir: Path
) -> None:
    assert (hf_tiny_llama_sharded_dir / "model.safetensors.index.json").is_file()
    single, _ = load_model(hf_tiny_llama_dir)
    sharded, _ = load_model(hf_tiny_llama_sharded_dir)
    for (name, a), (_, b) in zip(
        single.state_dict().items(), sharded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_tied_checkpoint_shares_embedding_with_lm_head(hf_tiny_llama_tied_dir: Path) -> None:
    net, config = load_model(hf_tiny_llama_tied_dir)
    assert config.tie_word_embeddings
    assert net.lm_head.weight is net.model.embed_tokens.weight
    saved = load_file(str(hf_tiny_llama_tied_dir / "model.safetensors"))
    assert "lm_head.weight" not in saved
    assert torch.equal(net.lm_head.weight, saved["model.embed_tokens.weight"])


def test_dtype_override_loads_weights_in_that_dtype(hf_tiny_qwen2_dir: Path) -> None:
    net, config = load_model(hf_tiny_qwen2_dir, dtype=torch.bfloat16)
    assert config.torch_dtype == torch.bfloat16
    assert {p.dtype for p in net.parameters()} == {torch.bfloat16}


def test_presets_load_dummy_weights_deterministically_by_seed() -> None:
    first, config = load_model("tiny", seed=7)
    again, _ = load_model("tiny", seed=7)
    other, _ = load_model("tiny", seed=8)
    assert config.vocab_size == 384
    for (name, a), (_, b), (_, c) in zip(
        first.state_dict().items(),
        again.state_dict().items(),
        other.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(a, b), name
        if name.endswith("proj.weight") or name.endswith("embed_tokens.weight"):
            assert not torch.equal(a, c), name


def test_dummy_weights_give_finite_moderate_logits() -> None:
    net, _ = load_model("tiny")
    logits = prefill_logits(net, list(range(0, 250, 10)))
    assert torch.isfinite(logits).all()
    assert 0 < logits.std() < 5


def test_bench_preset_runs_a_forward_in_bfloat16() -> None:
    net, config = load_model("bench-8b-kv")
    assert config.torch_dtype == torch.bfloat16
    logits = prefill_logits(net, [256, 72, 105, 33], block_size=16)
    assert logits.shape == (4, 512) and torch.isfinite(logits).all()


def test_dummy_format_with_a_directory_takes_config_but_not_weights(
    hf_tiny_llama_dir: Path,
) -> None:
    net, config = load_model(hf_tiny_llama_dir, load_format="dummy", seed=0)
    assert (config.vocab_size, config.hidden_size, config.num_layers) == (300, 64, 2)
    saved = load_file(str(hf_tiny_llama_dir / "model.safetensors"))
    assert not torch.equal(net.model.embed_tokens.weight, saved["model.embed_tokens.weight"])


def test_missing_directory_is_reported_with_the_presets(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="neither an existing directory nor a preset.*tiny"):
        load_model(tmp_path / "no-such-model")


def test_unknown_preset_name_is_reported() -> None:
    with pytest.raises(ModelLoadError, match="'llama-70b'.*presets: tiny"):
        load_model("llama-70b")


def test_directory_without_config_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="needs a config.json"):
        load_model(tmp_path)


def test_corrupt_config_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot parse"):
        load_model(tmp_path)


def test_unsupported_architecture_is_reported(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "gpt2")
    hf_config = json.loads((directory / "config.json").read_text())
    hf_config["architectures"] = ["GPT2LMHeadModel"]
    (directory / "config.json").write_text(json.dumps(hf_config))
    with pytest.raises(
        ModelLoadError, match="config.json: unsupported architecture GPT2LMHeadModel"
    ):
        load_model(directory)


def test_truncated_safetensors_file_is_reported(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "truncated")
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="model.safetensors .corrupt or truncated"):
        load_model(directory)


def test_garbage_safetensors_header_is_reported(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "garbage")
    (directory / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="corrupt or truncated"):
        load_model(directory)


def test_missing_tensor_is_named(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "missing")
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(ModelLoadError, match=r"lacks tensors: model\.layers\.1\.mlp\.up_proj"):
        load_model(directory)


def test_untied_checkpoint_without_lm_head_is_reported(
    tmp_path: Path, hf_tiny_llama_dir: Path
) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "no-head")
    tensors = load_file(str(directory / "model.safetensors"))
    del tensors["lm_head.weight"]
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="lacks tensors: lm_head.weight"):
        load_model(directory)


def test_shape_mismatch_names_tensor_and_shapes(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "shape")
    hf_config = json.loads((directory / "config.json").read_text())
    hf_config["intermediate_size"] = 96
    (directory / "config.json").write_text(json.dumps(hf_config))
    expected = r"mlp\.\w+_proj\.weight has shape \(\d+, \d+\), the config implies .*96"
    with pytest.raises(ModelLoadError, match=expected):
        load_model(directory)


def test_unexpected_tensor_is_reported(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "extra")
    tensors = load_file(str(directory / "model.safetensors"))
    tensors["model.layers.2.mlp.up_proj.weight"] = torch.zeros(128, 64)
    save_file(tensors, str(directory / "model.safetensors"))
    with pytest.raises(ModelLoadError, match="does not use: model.layers.2.mlp.up_proj.weight"):
        load_model(directory)


def test_directory_without_safetensors_is_reported(tmp_path: Path, hf_tiny_llama_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_dir, tmp_path / "bin-only")
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="only safetensors checkpoints are supported"):
        load_model(directory)


def test_missing_shard_is_reported(tmp_path: Path, hf_tiny_llama_sharded_dir: Path) -> None:
    directory = copy_checkpoint(hf_tiny_llama_sharded_dir, tmp_path / "shards")
    shard = sorted(directory.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ModelLoadError, match=f"missing shard files: {shard.name}"):
        load_model(directory)


def test_preset_cannot_be_loaded_as_safetensors() -> None:
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model("tiny", load_format="safetensors")


def test_load_errors_are_value_errors() -> None:
    assert issubclass(ModelLoadError, ValueError)
