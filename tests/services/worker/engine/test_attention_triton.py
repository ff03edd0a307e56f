"""The Triton paged-decode kernel and backend against the reference, on CPU via Triton's
interpreter (TRITON_INTERPRET=1, set here before Triton is first imported) or on CUDA."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

from fastswitch_worker.engine.attention import paged_attention, plan_attention  # noqa: E402
from fastswitch_worker.engine.attention_backends import TorchBackend, TritonBackend  # noqa: E402
from fastswitch_worker.engine.attention_metadata import AttentionMetadata  # noqa: E402
from fastswitch_worker.engine.attention_triton import (  # noqa: E402
    MAX_SPLITS,
    is_supported,
    num_splits_for,
    paged_decode,
)
from fastswitch_worker.engine.loader import load_model  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
BLOCK_SIZE = 16


def decode_metadata(tables: list[list[int]], context_lens: list[int],
                    block_size: int = BLOCK_SIZE) -> AttentionMetadata:
    num_seqs = len(context_lens)
    slots = [tables[i][(n - 1) // block_size] * block_size + (n - 1) % block_size
             for i, n in enumerate(context_lens)]
    return AttentionMetadata(slot_mapping=torch.tensor(slots, device=DEVICE),
                             query_start_locs=tuple(range(num_seqs + 1)),
                             context_lens=tuple(context_lens),
                             block_tables=tuple(torch.tensor(t) for t in tables))


@pytest.mark.parametrize(("num_heads", "num_kv_heads", "block_size", "num_splits"), [
    (8, 2, 16, 1), (4, 4, 16, 1), (6, 2, 5, 1), (8, 2, 5, 3), (6, 2, 16, None)])
def test_kernel_reads_the_strided_layer_view_in_place_and_matches_the_reference(
        num_heads: int, num_kv_heads: int, block_size: int, num_splits: int | None) -> None:
    generator = torch.Generator().manual_seed(0)
    num_layers, head_dim, num_blocks = 3, 32, 64
    kv_cache = torch.randn(num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim,
                           generator=generator).to(DEVICE)
    # Lengths at, just past and inside block and tile boundaries; scattered blocks.
    context_lens = [33, 16, 17, 130, 64]
    free = torch.randperm(num_blocks, generator=generator).tolist()
    tables = []
    for n in context_lens:
        num_needed = -(-n // block_size)
        tables.append(free[:num_needed])
        free = free[num_needed:]
    attn = decode_metadata(tables, context_lens, block_size)
    query = torch.randn(len(context_lens), num_heads, head_dim, generator=generator).to(DEVICE)
    block_tables = torch.tensor(attn.block_tables, dtype=torch.int32, device=DEVICE)
    lens = torch.tensor(context_lens, dtype=torch.int32, device=DEVICE)
    for layer_idx in (0, 2):
        ours = paged_decode(query, kv_cache, layer_idx, block_tables, lens, num_splits)
        reference = paged_attention(query, kv_cache, layer_idx, plan_attention(attn, kv_cache))
        torch.testing.assert_close(ours, reference, atol=2e-5, rtol=2e-5)


def test_small_batches_split_their_contexts_and_large_ones_do_not() -> None:
    assert num_splits_for(num_seqs=1, num_kv_heads=8) == MAX_SPLITS
    assert num_splits_for(num_seqs=4, num_kv_heads=8) == 8
    assert num_splits_for(num_seqs=32, num_kv_heads=8) == 1
    assert num_splits_for(num_seqs=128, num_kv_heads=8) == 1


@pytest.mark.parametrize("num_splits", [1, 4])
def test_a_split_with_no_tokens_contributes_nothing(num_splits: int) -> None:
    generator = torch.Generator().manual_seed(2)
    kv_cache = torch.randn(4, 1, 2, BLOCK_SIZE, 1, 16, generator=generator).to(DEVICE)
    query = torch.randn(1, 2, 16, generator=generator).to(DEVICE)
    tables = torch.tensor([[2]], dtype=torch.int32, device=DEVICE)
    lens = torch.tensor([3], dtype=torch.int32, device=DEVICE)  # one tile: splits 1.. are empty
    attn = decode_metadata([[2]], [3])
    reference = paged_attention(query, kv_cache, 0, plan_attention(attn, kv_cache))
    torch.testing.assert_close(paged_decode(query, kv_cache, 0, tables, lens, num_splits),
                               reference, atol=2e-5, rtol=2e-5)


def test_kernel_ignores_blocks_past_the_context() -> None:
    generator = torch.Generator().manual_seed(1)
    kv_cache = torch.randn(6, 1, 2, BLOCK_SIZE, 2, 16, generator=generator).to(DEVICE)
    query = torch.randn(1, 4, 16, generator=generator).to(DEVICE)
    tables = torch.tensor([[1, 4]], dtype=torch.int32, device=DEVICE)
    lens = torch.tensor([20], dtype=torch.int32, device=DEVICE)
    before = paged_decode(query, kv_cache, 0, tables, lens)
    kv_cache[4, :, :, 4:] = 1e4  # slots past token 19 of the second block
    kv_cache[[0, 2, 3, 5]] = 1e4  # blocks the sequence does not own
    torch.testing.assert_close(paged_decode(query, kv_cache, 0, tables, lens), before)


def test_unsupported_shapes_are_refused_with_a_clear_error() -> None:
    assert is_supported(block_size=3, head_dim=32)
    assert not is_supported(block_size=16, head_dim=24)
    assert not is_supported(block_size=16, head_dim=8)
    kv_cache = torch.zeros(2, 1, 2, 4, 1, 24, device=DEVICE)
    with pytest.raises(ValueError, match="power-of-two head_dim"):
        paged_decode(torch.zeros(1, 1, 24, device=DEVICE), kv_cache, 0,
                     torch.zeros(1, 1, dtype=torch.int32, device=DEVICE),
                     torch.ones(1, dtype=torch.int32, device=DEVICE))


def test_model_decode_step_through_the_triton_backend_equals_the_reference() -> None:
    net, config = load_model("tiny", load_format="dummy", device=DEVICE, seed=3)
    shape = (16, config.num_layers, 2, BLOCK_SIZE, config.num_kv_heads, config.head_dim)
    kv_cache = torch.zeros(shape, device=DEVICE)
    tables = [[3, 9], [12], [0, 5, 7]]
    prompts = [list(range(20, 40)), list(range(50, 61)), list(range(70, 103))]
    for table, prompt in zip(tables, prompts, strict=True):  # prefill through the reference
        slots = [table[p // BLOCK_SIZE] * BLOCK_SIZE + p % BLOCK_SIZE for p in range(len(prompt))]
        attn = AttentionMetadata(slot_mapping=torch.tensor(slots, device=DEVICE),
                                 query_start_locs=(0, len(prompt)), context_lens=(len(prompt),),
                                 block_tables=(torch.tensor(table),))
        net(torch.tensor(prompt, device=DEVICE), torch.arange(len(prompt), device=DEVICE),
            kv_cache, attn)
    context_lens = [len(p) + 1 for p in prompts]
    attn = decode_metadata(tables, context_lens)
    input_ids = torch.tensor([1, 2, 3], device=DEVICE)
    positions = torch.tensor([n - 1 for n in context_lens], device=DEVICE)
    reference_cache = kv_cache.clone()
    reference = net(input_ids, positions, reference_cache, attn, TorchBackend())
    ours = net(input_ids, positions, kv_cache, attn, TritonBackend())
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)
    # The same K/V written in place (later layers' inputs differ by rounding only).
    torch.testing.assert_close(kv_cache, reference_cache, atol=1e-4, rtol=1e-4)
    assert torch.equal(kv_cache[:, 0], reference_cache[:, 0])  # layer 0: identical inputs
