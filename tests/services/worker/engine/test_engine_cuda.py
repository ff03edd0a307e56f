"""The CUDA path: every attention backend against transformers in bf16, CUDA graphs against
eager, and swaps while graphs replay. Needs CUDA (run by benchmarks/gpu/run_engine.sh)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastswitch_worker.engine.attention_backends import select_backend
from fastswitch_worker.engine.attention_metadata import AttentionMetadata
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.loader import load_model
from fastswitch_worker.engine.model_runner import ModelRunner
from fastswitch_worker.engine.sequence import StopConditions

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

BLOCK_SIZE = 16
# bf16 against transformers' bf16 forward: the largest logit error stays below this fraction of
# the largest logit (bf16 has 8 mantissa bits; kernels sum in different orders). The same bound
# as the CPU bf16 test in test_model_logits.py.
BF16_RELATIVE_TOLERANCE = 0.05


def available_backends() -> list[str]:
    names = ["torch", "triton"]
    try:
        import flashinfer  # noqa: F401
    except Exception:  # noqa: BLE001
        return names
    return [*names, "flashinfer"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with head_dim 64 (a size every backend compiles), random weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=320, hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # spread logits (the default init gives near-uniform ones)
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(1.0 + 0.2 * noise if "norm" in name else 0.08 * noise)
    directory = tmp_path_factory.mktemp("llama_hd64")
    model.save_pretrained(directory)
    return directory


def paged_logits(net: torch.nn.Module, backend_name: str, tokens: list[int]) -> torch.Tensor:
    """Logits of every position: a prefill chunk, a chunk over cached context, then decodes."""
    config = net.config
    backend = select_backend(backend_name, torch.device("cuda"), block_size=BLOCK_SIZE,
                             num_heads=config.num_attention_heads,
                             num_kv_heads=config.num_kv_heads, head_dim=config.head_dim)
    kv_cache = torch.zeros(12, config.num_layers, 2, BLOCK_SIZE, config.num_kv_heads,
                           config.head_dim, dtype=torch.bfloat16, device="cuda")
    table = [7, 2, 9, 4]
    steps = [(0, 20), (20, 33)] + [(n, n + 1) for n in range(33, len(tokens))]
    collected = []
    for start, stop in steps:
        slots = [table[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE for p in range(start, stop)]
        attn = AttentionMetadata(slot_mapping=torch.tensor(slots, device="cuda"),
                                 query_start_locs=(0, stop - start), context_lens=(stop,),
                                 block_tables=(torch.tensor(table),))
        hidden = net(torch.tensor(tokens[start:stop], device="cuda"),
                     torch.arange(start, stop, device="cuda"), kv_cache, attn, backend)
        collected.append(net.compute_logits(hidden))
    return torch.cat(collected)


@pytest.mark.parametrize("backend_name", available_backends())
def test_bf16_logits_match_transformers_on_every_backend(llama_dir: Path,
                                                         backend_name: str) -> None:
    from transformers import AutoModelForCausalLM

    tokens = torch.randint(3, 300, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    reference_model = AutoModelForCausalLM.from_pretrained(
        llama_dir, torch_dtype=torch.bfloat16).cuda().eval()
    with torch.no_grad():
        reference = reference_model(torch.tensor([tokens], device="cuda")).logits[0].float()
    net, _ = load_model(llama_dir, dtype="bfloat16", device="cuda")
    ours = paged_logits(net, backend_name, tokens)
    relative_error = (ours - reference).abs().max() / reference.abs().max()
    assert relative_error < BF16_RELATIVE_TOLERANCE


def make_engine(mode: str = "fastswitch", **overrides: object) -> Engine:
    settings = dict(model="tiny", load_format="dummy", device="cuda", dtype="float32", mode=mode,
                    block_size=BLOCK_SIZE, kv_cache_bytes=64 << 20, host_kv_bytes=64 << 20,
                    max_num_batched_tokens=64, max_num_seqs=8)
    settings.update(overrides)
    return Engine(EngineConfig(**settings))


PROMPTS = {f"r{i}": list(range(10 + i, 10 + i + 17 + 5 * i)) for i in range(5)}


def generate(engine: Engine, preempt: str | None = None) -> dict[str, list[int]]:
    for request_id, prompt in PROMPTS.items():
        engine.add_request(request_id, prompt, stop=StopConditions(max_tokens=40, ignore_eos=True))
    tokens: dict[str, list[int]] = {}
    step = 0
    while engine.has_unfinished_requests():
        if preempt is not None and step in (6, 15, 24):
            engine.preempt(preempt)  # the swap-out copies while graphs replay the others
        if preempt is not None and step in (9, 18, 27):
            engine.resume(preempt)
        for output in engine.step().outputs:
            tokens.setdefault(output.request_id, []).extend(output.new_token_ids)
        step += 1
    engine.close()
    return tokens


def test_graph_replays_generate_the_eager_tokens() -> None:
    eager = make_engine()
    eager.runner = ModelRunner(eager.model, eager.runner.gpu_kv, eager.block_size,
                               use_cuda_graphs=False)
    graphed = make_engine()
    assert graphed.runner.graphs is not None, f"backend {graphed.runner.backend.name}"
    eager_tokens = generate(eager)
    graphed_tokens = generate(graphed)
    assert graphed.runner.graphs.num_replays > 0
    assert graphed_tokens == eager_tokens


@pytest.mark.parametrize("mode", ["fastswitch", "baseline"])
def test_swaps_during_graph_replay_keep_every_output_identical(mode: str) -> None:
    reference = generate(make_engine(mode))
    engine = make_engine(mode)
    switched = generate(engine, preempt="r2")
    assert engine.counters.num_swap_outs >= 3
    assert engine.runner.graphs is not None and engine.runner.graphs.num_replays > 0
    assert switched == reference


def test_fastswitch_and_baseline_generate_the_same_tokens() -> None:
    assert generate(make_engine("fastswitch")) == generate(make_engine("baseline"))
