"""Our paged-KV model reproduces transformers' logits for every way a sequence can be batched."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fastswitch_worker.engine.attention import AttentionMetadata
from fastswitch_worker.engine.loader import load_model
from fastswitch_worker.engine.models import CausalLM

ATOL = 1e-4
NUM_CACHE_BLOCKS = 40

ALL_CHECKPOINTS = [
    "hf_tiny_llama_dir",
    "hf_tiny_llama_sharded_dir",
    "hf_tiny_llama3_rope_dir",
    "hf_tiny_llama_tied_dir",
    "hf_tiny_qwen2_dir",
]


@functools.cache
def _reference_model(path: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()


@functools.cache
def _our_model(path: str) -> CausalLM:
    return load_model(path)[0]


def reference_logits(path: Path, token_ids: list[int]) -> torch.Tensor:
    """transformers' logits for every position of one sequence, [len, vocab]."""
    with torch.no_grad():
        return _reference_model(str(path))(torch.tensor([token_ids])).logits[0].float()


@dataclass
class PagedSeq:
    """A sequence's tokens, the cache blocks it owns (in token order) and how far it has run."""

    token_ids: list[int]
    block_ids: list[int]
    num_computed_tokens: int = 0


def new_kv_cache(net: CausalLM, block_size: int) -> torch.Tensor:
    config = net.config
    shape = (
        NUM_CACHE_BLOCKS,
        config.num_layers,
        2,
        block_size,
        config.num_kv_heads,
        config.head_dim,
    )
    return torch.zeros(shape)


def run_step(
    net: CausalLM, kv_cache: torch.Tensor, seqs: list[PagedSeq], step: list[tuple[int, int]]
) -> dict[int, torch.Tensor]:
    """One forward over (seq index, num new tokens) pairs; returns seq index -> [new, vocab]."""
    block_size = kv_cache.shape[3]
    input_ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    query_start_locs = [0]
    context_lens: list[int] = []
    block_tables: list[torch.Tensor] = []
    for seq_index, num_new in step:
        seq = seqs[seq_index]
        start, stop = seq.num_computed_tokens, seq.num_computed_tokens + num_new
        assert stop <= len(seq.token_ids), "schedule runs past the sequence"
        input_ids += seq.token_ids[start:stop]
        positions += range(start, stop)
        slots += [
            seq.block_ids[p // block_size] * block_size + p % block_size for p in range(start, stop)
        ]
        query_start_locs.append(len(input_ids))
        context_lens.append(stop)
        block_tables.append(torch.tensor(seq.block_ids))
    attn = AttentionMetadata(
        slot_mapping=torch.tensor(slots),
        query_start_locs=tuple(query_start_locs),
        context_lens=tuple(context_lens),
        block_tables=tuple(block_tables),
    )
    logits = net.compute_logits(
        net(torch.tensor(input_ids), torch.tensor(positions), kv_cache, attn)
    )
    result = {}
    for row, (seq_index, num_new) in enumerate(step):
        seqs[seq_index].num_computed_tokens += num_new
        result[seq_index] = logits[query_start_locs[row] : query_start_locs[row + 1]]
    return result


def run_schedule(
    net: CausalLM, seqs: list[PagedSeq], schedule: list[list[tuple[int, int]]], block_size: int
) -> list[torch.Tensor]:
    """Run every step of the schedule; returns each sequence's logits for all its positions."""
    kv_cache = new_kv_cache(net, block_size)
    collected: list[list[torch.Tensor]] = [[] for _ in seqs]
    for step in schedule:
        for seq_index, logits in run_step(net, kv_cache, seqs, step).items():
            collected[seq_index].append(logits)
    return [torch.cat(parts) for parts in collected]


def random_tokens(num_tokens: int, seed: int) -> list[int]:
    return torch.randint(
        0, 300, (num_tokens,), generator=torch.Generator().manual_seed(seed)
    ).tolist()


@pytest.mark.parametrize("checkpoint", ALL_CHECKPOINTS)
def test_full_prefill_matches_transformers(checkpoint: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(checkpoint)
    tokens = random_tokens(21, seed=0)
    seqs = [PagedSeq(tokens, block_ids=[3, 9, 1, 6, 0, 12])]
    (ours,) = run_schedule(_our_model(str(path)), seqs, [[(0, 21)]], block_size=4)
    torch.testing.assert_close(ours, reference_logits(path, tokens), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "checkpoint", ["hf_tiny_llama_dir", "hf_tiny_llama3_rope_dir", "hf_tiny_qwen2_dir"]
)
def test_chunked_prefill_attending_to_cached_context_matches(
    checkpoint: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(checkpoint)
    tokens = random_tokens(15, seed=1)
    seqs = [PagedSeq(tokens, block_ids=[7, 2, 5, 11])]
    schedule = [[(0, 5)], [(0, 3)], [(0, 7)]]
    (ours,) = run_schedule(_our_model(str(path)), seqs, schedule, block_size=4)
    torch.testing.assert_close(ours, reference_logits(path, tokens), atol=ATOL, rtol=0)


@pytest.mark.parametrize("block_size", [3, 4])
@pytest.mark.parametrize("checkpoint", ["hf_tiny_llama3_rope_dir", "hf_tiny_llama_tied_dir"])
def test_token_by_token_decode_through_paged_cache_matches(
    checkpoint: str, block_size: int, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(checkpoint)
    tokens = random_tokens(19, seed=2)
    # 19 tokens never fill the last block evenly for block sizes 3 and 4.
    seqs = [PagedSeq(tokens, block_ids=[13, 4, 8, 0, 21, 17, 2])]
    schedule = [[(0, 2)]] + [[(0, 1)] for _ in range(17)]
    (ours,) = run_schedule(_our_model(str(path)), seqs, schedule, block_size=block_size)
    torch.testing.assert_close(ours, reference_logits(path, tokens), atol=ATOL, rtol=0)


@pytest.mark.parametrize("block_size", [3, 4])
@pytest.mark.parametrize("checkpoint", ["hf_tiny_llama_dir", "hf_tiny_qwen2_dir"])
def test_one_forward_mixing_prefill_chunks_and_decodes_of_several_sequences_matches(
    checkpoint: str, block_size: int, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(checkpoint)
    lengths = [9, 12, 8, 12]
    # Scattered, non-increasing block ids, interleaved between the sequences.
    block_ids = torch.randperm(
        NUM_CACHE_BLOCKS, generator=torch.Generator().manual_seed(5)
    ).tolist()
    seqs = [
        PagedSeq(random_tokens(length, seed=10 + i), block_ids=block_ids[i::4][:5])
        for i, length in enumerate(lengths)
    ]
    schedule = [
        [(0, 7), (1, 4)],  # two prefills (one a first chunk)
        [(0, 1), (1, 6), (2, 6)],  # a decode, a chunk over cached context, a full prefill
        [(2, 1), (0, 1), (3, 5), (1, 1)],  # decodes of different context lengths and a prefill
        [(1, 1), (2, 1), (3, 6)],
        [(3, 1)],
    ]
    results = run_schedule(_our_model(str(path)), seqs, schedule, block_size=block_size)
    for seq, ours in zip(seqs, results, strict=True):
        assert seq.num_computed_tokens == len(seq.token_ids)
        torch.testing.assert_close(ours, reference_logits(path, seq.token_ids), atol=ATOL, rtol=0)


def test_decodes_of_equal_context_length_batch_together_and_match(hf_tiny_llama_dir: Path) -> None:
    tokens_a, tokens_b = random_tokens(8, seed=20), random_tokens(8, seed=21)
    seqs = [PagedSeq(tokens_a, block_ids=[5, 1]), PagedSeq(tokens_b, block_ids=[0, 7])]
    schedule = [[(0, 6), (1, 6)], [(1, 1), (0, 1)], [(0, 1), (1, 1)]]
    ours_a, ours_b = run_schedule(_our_model(str(hf_tiny_llama_dir)), seqs, schedule, block_size=4)
    torch.testing.assert_close(
        ours_a, reference_logits(hf_tiny_llama_dir, tokens_a), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        ours_b, reference_logits(hf_tiny_llama_dir, tokens_b), atol=ATOL, rtol=0
    )


def test_logits_are_sensitive_to_a_wrong_position(hf_tiny_llama_dir: Path) -> None:
    """Negative control: the fixtures' logits move far beyond the tolerance on a RoPE error.

    (Shifting every position by the same amount would change nothing: RoPE is relative.)"""
    net = _our_model(str(hf_tiny_llama_dir))
    tokens = random_tokens(12, seed=3)
    seqs = [PagedSeq(tokens, block_ids=[0, 1, 2])]
    kv_cache = new_kv_cache(net, block_size=4)
    attn = AttentionMetadata(
        slot_mapping=torch.arange(12),
        query_start_locs=(0, 12),
        context_lens=(12,),
        block_tables=(torch.tensor(seqs[0].block_ids),),
    )
    stretched_positions = torch.arange(12) * 2
    shifted = net.compute_logits(net(torch.tensor(tokens), stretched_positions, kv_cache, attn))
    error = (shifted - reference_logits(hf_tiny_llama_dir, tokens)).abs().max().item()
    assert error > 1000 * ATOL


def test_forward_writes_kv_only_into_the_sequences_blocks(hf_tiny_llama_dir: Path) -> None:
    net = _our_model(str(hf_tiny_llama_dir))
    seqs = [PagedSeq(random_tokens(6, seed=4), block_ids=[9, 3])]
    kv_cache = new_kv_cache(net, block_size=4)
    run_step(net, kv_cache, seqs, [(0, 6)])
    touched = kv_cache.flatten(1).abs().sum(dim=1) > 0  # per block
    assert touched.nonzero().flatten().tolist() == [3, 9]
    # Slots 6 and 7 (block 3, offsets 2 and 3) are past the sequence: still empty.
    assert kv_cache[3, :, :, 2:].abs().sum() == 0


def test_bfloat16_weights_and_cache_stay_close_to_float32_reference(
    hf_tiny_llama_dir: Path,
) -> None:
    net, config = load_model(hf_tiny_llama_dir, dtype="bfloat16")
    assert config.torch_dtype == torch.bfloat16
    tokens = random_tokens(10, seed=6)
    seqs = [PagedSeq(tokens, block_ids=[2, 0, 1])]
    kv_cache = new_kv_cache(net, block_size=4).to(torch.bfloat16)
    ours = torch.cat([run_step(net, kv_cache, seqs, step)[0] for step in ([(0, 7)], [(0, 3)])])
    assert ours.dtype == torch.float32
    reference = reference_logits(hf_tiny_llama_dir, tokens)
    relative_error = (ours - reference).abs().max() / reference.abs().max()
    assert relative_error < 0.05
