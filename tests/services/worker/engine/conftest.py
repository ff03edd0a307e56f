"""Tiny Hugging Face checkpoints and a byte-level BPE tokenizer, built offline per session;
and PureWorker, the engine's bookkeeping without torch, for the scheduler and switch tests.

Each `hf_tiny_*_dir` fixture is a directory with the layout real checkpoints have (config.json,
model.safetensors or shards + index). Weights are random but scaled up from the usual 0.02 init,
and norms and biases are randomised too, so logits vary by whole units and a wrong mask, RoPE or
bias shows up far above the comparison tolerance.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from fastswitch_worker.engine.kv_manager import KVLayout, KVManager, PublishedKV, SwapPlan
from fastswitch_worker.engine.outputs import SwapCounters
from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.scheduler import BatchScheduler, SchedulerLimits
from fastswitch_worker.engine.scheduler_output import SchedulerOutput
from fastswitch_worker.engine.sequence import Request, RequestStatus
from fastswitch_worker.engine.switches import CopyKind, FinishedCopy, Switches

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY_HF_DIMS = {
    "vocab_size": 300,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def _randomise_(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if "norm" in name:
                param.copy_(1.0 + 0.2 * noise)
            else:
                param.copy_(0.15 * noise)


def _save_tiny(directory: Path, architecture: str, seed: int, **overrides: object) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }
    config_class, model_class = classes[architecture]
    config = config_class(**{**TINY_HF_DIMS, **overrides})
    model = model_class(config)
    _randomise_(model, seed)
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def hf_tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Llama, plain RoPE, untied embeddings, single model.safetensors."""
    return _save_tiny(tmp_path_factory.mktemp("hf_tiny_llama"), "llama", seed=1)


@pytest.fixture(scope="session")
def hf_tiny_llama_sharded_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights as hf_tiny_llama_dir, saved as several shards plus an index."""
    from transformers import LlamaForCausalLM

    source = tmp_path_factory.mktemp("hf_tiny_llama_source")
    _save_tiny(source, "llama", seed=1)
    directory = tmp_path_factory.mktemp("hf_tiny_llama_sharded")
    LlamaForCausalLM.from_pretrained(source).save_pretrained(directory, max_shard_size="40KB")
    return directory


@pytest.fixture(scope="session")
def hf_tiny_llama3_rope_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Llama with Llama-3.1 RoPE scaling; a short original context puts every frequency band
    (kept, blended, divided) in play at tiny head_dim."""
    rope = {
        "rope_type": "llama3",
        "rope_theta": 500000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32,
    }
    return _save_tiny(
        tmp_path_factory.mktemp("hf_tiny_llama3"), "llama", seed=2, rope_parameters=rope
    )


@pytest.fixture(scope="session")
def hf_tiny_llama_tied_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Llama with tied embeddings (no lm_head.weight saved), an explicit head_dim (24, not
    64 / 4) and attention_bias (biases on q/k/v and o_proj)."""
    return _save_tiny(
        tmp_path_factory.mktemp("hf_tiny_llama_tied"),
        "llama",
        seed=3,
        tie_word_embeddings=True,
        head_dim=24,
        attention_bias=True,
    )


@pytest.fixture(scope="session")
def hf_tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Qwen2 (q/k/v bias, o_proj without), tied embeddings like the small Qwen2 models."""
    return _save_tiny(
        tmp_path_factory.mktemp("hf_tiny_qwen2"), "qwen2", seed=4, tie_word_embeddings=True
    )


BPE_TRAINING_TEXT = [
    "hello world, the quick brown fox jumps over the lazy dog",
    "héllo wörld: café, naïve, façade",
    "世界 你好 日本語 テキスト",
    "emoji 🙂 🚀 and symbols ∑ ∞ ≠",
] * 20


@pytest.fixture(scope="session")
def hf_byte_bpe_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tokenizer.json of a byte-level BPE (~300 tokens, <s> adds itself) with
    tokenizer_config.json naming </s> as EOS and generation_config.json adding id 5."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(BPE_TRAINING_TEXT, trainer)
    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", bos_id)]
    )
    directory = tmp_path_factory.mktemp("hf_byte_bpe_tokenizer")
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": {"content": "</s>", "special": True}})
    )
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [5]}))
    return directory


# ---- the engine's bookkeeping without torch, for the scheduler and switch tests ------------

class FakeCopies:
    """switches.CopyRunner in pure Python: moves no data; copies finish when a test says."""

    def __init__(self) -> None:
        self.ran_now: list[SwapPlan] = []  # blocking copies, in the order they ran
        self.in_flight: list[FinishedCopy] = []  # what finish() will report, in order

    def run_now(self, plan: SwapPlan) -> None:
        self.ran_now.append(plan)

    def submit(self, plan: SwapPlan, kind: CopyKind) -> None:
        self.in_flight.append(FinishedCopy(plan, kind))

    def cancel_swap_out(self, request_id: str) -> None:
        self.in_flight = [
            replace(c, is_cancelled=True)
            if c.kind is CopyKind.SWAP_OUT and c.plan.request_id == request_id else c
            for c in self.in_flight]

    def finish(self) -> list[FinishedCopy]:
        finished, self.in_flight = self.in_flight, []
        return finished


class PureWorker:
    """Queues, KV manager, switches and batch scheduler wired as the engine wires them, on
    tiny pools (block_size 4, 8 GPU blocks). step() schedules, launches the copies and
    pretends to compute: a chunk's tokens count as computed, a sampling chunk adds token 7.
    Copies finish only in finish_copies(). Integrity is checked after every call."""

    def __init__(self, *, num_gpu_blocks: int = 8, num_host_blocks: int = 8,
                 is_reuse: bool = True, **limits: object) -> None:
        self.kv = KVManager(KVLayout(block_size=4, num_gpu_blocks=num_gpu_blocks,
                                     num_host_blocks=num_host_blocks, is_block_groups=True,
                                     is_reuse=is_reuse))
        self.queues = RequestQueues()
        self.counters = SwapCounters()
        self.switches = Switches(self.kv, self.queues, self.counters, block_bytes=1)
        self.scheduler = BatchScheduler(self.kv, self.queues, self.switches,
                                        SchedulerLimits(**limits))
        self.copies = FakeCopies()
        self.requests: dict[str, Request] = {}

    def add(self, request_id: str, prompt: int | list[int], **fields: object) -> Request:
        """Queues a request with `prompt` tokens (a count: tokens 1, 2, ...)."""
        token_ids = list(range(1, prompt + 1)) if isinstance(prompt, int) else list(prompt)
        request = Request(request_id, token_ids, **fields)
        self.requests[request_id] = request
        self.scheduler.add(request)
        self.check()
        return request

    def step(self) -> SchedulerOutput:
        output = self.scheduler.schedule()
        self.switches.launch(output, self.copies)
        for chunk in output.chunks:
            is_sampling = chunk.is_sampling
            chunk.request.num_computed_tokens += chunk.num_new_tokens
            if is_sampling:
                chunk.request.output_token_ids.append(7)
        self.check()
        return output

    def finish_copies(self) -> list[PublishedKV]:
        published = self.switches.apply_finished(self.copies.finish(), self.requests)
        self.check()
        return published

    def batch(self, output: SchedulerOutput) -> dict[str, int]:
        """request id -> tokens computed this step."""
        return {c.request.request_id: c.num_new_tokens for c in output.chunks}

    def status(self, request_id: str) -> RequestStatus:
        return self.requests[request_id].status

    def check(self) -> None:
        self.kv.check_integrity()
        self.queues.check_integrity()


@pytest.fixture
def make_worker() -> type[PureWorker]:
    return PureWorker
