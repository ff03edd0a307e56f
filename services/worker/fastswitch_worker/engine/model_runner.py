"""Turns a scheduled batch into tensors, runs the model and samples the next tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fastswitch_worker.engine.attention import AttentionMetadata
from fastswitch_worker.engine.sampler import Sampler
from fastswitch_worker.engine.scheduler_output import ScheduledChunk


@dataclass(frozen=True)
class BatchInputs:
    input_ids: torch.Tensor  # [num_tokens] int64
    positions: torch.Tensor  # [num_tokens] int64
    attn: AttentionMetadata
    sample_rows: tuple[int, ...]  # rows of the batch whose logits give a next token
    sample_chunk_indices: tuple[int, ...]  # which chunk each of those rows belongs to


def prepare_inputs(chunks: tuple[ScheduledChunk, ...], block_size: int,
                   device: torch.device) -> BatchInputs:
    """Pure: flattens the chunks' new tokens; reads (never mutates) the requests."""
    input_ids: list[int] = []
    positions: list[int] = []
    slots: list[int] = []
    query_start_locs = [0]
    context_lens: list[int] = []
    block_tables: list[torch.Tensor] = []
    sample_rows: list[int] = []
    sample_chunks: list[int] = []
    for index, chunk in enumerate(chunks):
        request = chunk.request
        start = request.num_computed_tokens
        stop = start + chunk.num_new_tokens
        block_ids = request.gpu_table.block_ids()
        input_ids.extend(request.all_token_ids[start:stop])
        positions.extend(range(start, stop))
        slots.extend(block_ids[p // block_size] * block_size + p % block_size
                     for p in range(start, stop))
        query_start_locs.append(len(input_ids))
        context_lens.append(stop)
        block_tables.append(torch.tensor(block_ids[: -(-stop // block_size)], dtype=torch.int64,
                                         device=device))
        if chunk.is_sampling:
            sample_rows.append(len(input_ids) - 1)
            sample_chunks.append(index)
    attn = AttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=device),
        query_start_locs=tuple(query_start_locs),
        context_lens=tuple(context_lens),
        block_tables=tuple(block_tables),
    )
    return BatchInputs(
        torch.tensor(input_ids, dtype=torch.int64, device=device),
        torch.tensor(positions, dtype=torch.int64, device=device),
        attn, tuple(sample_rows), tuple(sample_chunks))


class ModelRunner:
    """Owns the model and the GPU KV pool; run() is called by the engine thread only."""

    def __init__(self, model: torch.nn.Module, gpu_kv: torch.Tensor, block_size: int) -> None:
        self.model = model
        self.gpu_kv = gpu_kv
        self.block_size = block_size
        self.device = gpu_kv.device
        self.sampler = Sampler()

    @torch.inference_mode()
    def run(self, chunks: tuple[ScheduledChunk, ...]) -> dict[int, tuple[int, float | None]]:
        """Forward the batch (writes new K/V into the pool); returns chunk index -> sample."""
        inputs = prepare_inputs(chunks, self.block_size, self.device)
        hidden = self.model(inputs.input_ids, inputs.positions, self.gpu_kv, inputs.attn)
        if not inputs.sample_rows:
            return {}
        rows = torch.tensor(inputs.sample_rows, dtype=torch.int64, device=self.device)
        logits = self.model.compute_logits(hidden[rows])  # [num_sampling, vocab]
        sampled = [chunks[i].request for i in inputs.sample_chunk_indices]
        samples = self.sampler.sample(logits, [r.request_id for r in sampled],
                                      [r.sampling for r in sampled])
        return dict(zip(inputs.sample_chunk_indices, samples, strict=True))
