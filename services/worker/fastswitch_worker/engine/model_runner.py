"""Turns a scheduled batch into tensors, runs the model and samples the next tokens.

Batch preparation touches each request once (its new token ids and block extents) and builds
positions, slots and page tables with numpy for the whole batch; the token inputs go to the
device in one copy. Decode steps on CUDA replay a CUDA graph per batch-size bucket
(cuda_graphs.py) when the attention backend supports it; everything else runs eagerly.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

from fastswitch_worker.engine.attention_backends import select_backend
from fastswitch_worker.engine.attention_metadata import (
    AttentionMetadata,
    slot_mapping_of,
    token_positions,
)
from fastswitch_worker.engine.cuda_graphs import DecodeGraphRunner, DecodeInputs
from fastswitch_worker.engine.sampler import Sampler
from fastswitch_worker.engine.scheduler_output import ScheduledChunk
from fastswitch_worker.engine.sequence import Request


@dataclass(frozen=True)
class BatchInputs:
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64
    attn: AttentionMetadata
    sample_rows: tuple[int, ...]  # rows of the batch whose logits give a next token
    sample_chunk_indices: tuple[int, ...]  # which chunk each of those rows belongs to
    host_input_ids: np.ndarray  # [num_tokens] int64, the same as input_ids, on the host
    host_positions: np.ndarray  # [num_tokens] int64
    host_slot_mapping: np.ndarray  # [num_tokens] int64


def new_token_ids(request: Request, start: int, stop: int) -> list[int]:
    """request.all_token_ids[start:stop] without concatenating the whole history; pure."""
    num_prompt = len(request.prompt_token_ids)
    if start >= num_prompt:
        return request.output_token_ids[start - num_prompt : stop - num_prompt]
    if stop <= num_prompt:
        return request.prompt_token_ids[start:stop]
    return request.prompt_token_ids[start:] + request.output_token_ids[: stop - num_prompt]


def _fill_block_table(row: np.ndarray, request: Request, num_blocks: int) -> None:
    """Mutates row: the first num_blocks of the request's GPU block ids, extent by extent."""
    assert request.gpu_table is not None, f"{request.request_id} has no GPU blocks"
    filled = 0
    for extent in request.gpu_table.extents():
        if filled >= num_blocks:
            break
        take = min(extent.num_blocks, num_blocks - filled)
        row[filled : filled + take] = np.arange(extent.start, extent.start + take)
        filled += take
    if filled < num_blocks:
        raise ValueError(f"{request.request_id}: {num_blocks} blocks needed, table has {filled}")


def prepare_inputs(chunks: tuple[ScheduledChunk, ...], block_size: int,
                   device: torch.device) -> BatchInputs:
    """Pure: flattens the chunks' new tokens; reads (never mutates) the requests."""
    num_seqs = len(chunks)
    starts = np.fromiter((c.request.num_computed_tokens for c in chunks), np.int64, num_seqs)
    query_lens = np.fromiter((c.num_new_tokens for c in chunks), np.int64, num_seqs)
    context_lens = starts + query_lens
    query_start_locs = np.zeros(num_seqs + 1, dtype=np.int64)
    np.cumsum(query_lens, out=query_start_locs[1:])
    num_tokens = int(query_start_locs[-1])
    input_ids = np.fromiter(itertools.chain.from_iterable(
        new_token_ids(c.request, int(s), int(e))
        for c, s, e in zip(chunks, starts, context_lens, strict=True)), np.int64, num_tokens)
    num_blocks = -(-context_lens // block_size)
    block_tables = np.zeros((num_seqs, int(num_blocks.max(initial=1))), dtype=np.int64)
    for index, chunk in enumerate(chunks):
        _fill_block_table(block_tables[index], chunk.request, int(num_blocks[index]))
    positions = token_positions(query_start_locs, context_lens)
    slots = slot_mapping_of(block_tables, query_start_locs, positions, block_size)
    is_sampling = np.fromiter((c.is_sampling for c in chunks), bool, num_seqs)
    sample_chunks = np.flatnonzero(is_sampling)
    # One host-to-device copy for the three per-token arrays.
    token_inputs = torch.from_numpy(np.stack((input_ids, positions, slots))).to(
        device, non_blocking=True)
    attn = AttentionMetadata(slot_mapping=token_inputs[2], query_start_locs=query_start_locs,
                             context_lens=context_lens, block_tables=block_tables,
                             num_table_blocks=num_blocks)
    return BatchInputs(token_inputs[0], token_inputs[1], attn,
                       tuple((query_start_locs[sample_chunks + 1] - 1).tolist()),
                       tuple(sample_chunks.tolist()),
                       input_ids, positions, slots)


class ModelRunner:
    """Owns the model and the GPU KV pool; run() is called by the engine thread only."""

    def __init__(self, model: torch.nn.Module, gpu_kv: torch.Tensor, block_size: int, *,
                 attention_backend: str = "auto", use_cuda_graphs: bool = True,
                 max_num_seqs: int = 256, max_model_len: int | None = None) -> None:
        self.model = model
        self.gpu_kv = gpu_kv
        self.block_size = block_size
        self.device = gpu_kv.device
        config = model.config
        self.backend = select_backend(
            attention_backend, self.device, block_size=block_size,
            num_heads=config.num_attention_heads, num_kv_heads=config.num_kv_heads,
            head_dim=config.head_dim, dtype=gpu_kv.dtype)
        self.sampler = Sampler()
        self.graphs: DecodeGraphRunner | None = None
        if use_cuda_graphs and self.device.type == "cuda" and self.backend.supports_graphs:
            self.graphs = DecodeGraphRunner(
                model, gpu_kv, self.backend, max_num_seqs=max_num_seqs,
                max_model_len=max_model_len or config.max_position_embeddings)

    @torch.inference_mode()
    def run(self, chunks: tuple[ScheduledChunk, ...]) -> dict[int, tuple[int, float | None]]:
        """Forward the batch (writes new K/V into the pool); returns chunk index -> sample."""
        inputs = prepare_inputs(chunks, self.block_size, self.device)
        if self._is_graph_step(inputs):
            logits = self._graph_logits(inputs)
        else:
            hidden = self.model(inputs.input_ids, inputs.positions, self.gpu_kv, inputs.attn,
                                self.backend)
            if not inputs.sample_rows:
                return {}
            rows = torch.tensor(inputs.sample_rows, dtype=torch.int64, device=self.device)
            logits = self.model.compute_logits(hidden[rows])  # [num_sampling, vocab]
        sampled = [chunks[i].request for i in inputs.sample_chunk_indices]
        samples = self.sampler.sample(logits, [r.request_id for r in sampled],
                                      [r.sampling for r in sampled])
        return dict(zip(inputs.sample_chunk_indices, samples, strict=True))

    def _is_graph_step(self, inputs: BatchInputs) -> bool:
        """A decode step every sequence samples from, in a bucket the graphs cover."""
        attn = inputs.attn
        return (self.graphs is not None and attn.is_all_decode
                and len(inputs.sample_rows) == attn.num_seqs
                and self.graphs.can_run(attn.num_seqs, attn.block_tables.shape[1]))

    def _graph_logits(self, inputs: BatchInputs) -> torch.Tensor:
        assert self.graphs is not None
        attn = inputs.attn
        return self.graphs.run(DecodeInputs(
            input_ids=inputs.host_input_ids, positions=inputs.host_positions,
            slot_mapping=inputs.host_slot_mapping,
            block_tables=attn.block_tables, context_lens=attn.context_lens))
