"""CUDA graphs for decode steps: one graph per batch-size bucket, replayed with new inputs.

A decode step of n sequences runs as the graph of the smallest bucket >= n. Its static buffers
(token ids, positions, slots, the backend's page-table buffers) are overwritten in place and the
graph replayed; rows n..bucket-1 repeat row 0 (same token, position, slot and table), so they
write the very K/V row 0 writes to the same slot and read only row 0's blocks: padding never
touches another request's memory. Prefill chunks, mixed batches and sizes above the largest
bucket run eagerly.

A bucket is captured on first use, with that step's own inputs: the warm-up run before capture
computes the step for real (the capture itself executes nothing), and the replay that follows
recomputes it and writes the same K/V again. Capture uses thread-local mode so the swapper's
copy threads keep issuing copies on their own streams meanwhile; a replay runs on the current
(compute) stream like eager work, so the D2H stream's wait on the compute stream still orders
swap-outs after the steps that wrote the blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fastswitch_worker.engine.attention_backends import GraphableBackend

DEFAULT_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def graph_buckets(max_num_seqs: int, buckets: tuple[int, ...] = DEFAULT_BUCKETS) -> tuple[int, ...]:
    """The buckets a runner batching at most max_num_seqs sequences needs (it included); pure."""
    kept = tuple(b for b in buckets if b < max_num_seqs)
    return (*kept, max_num_seqs)


def bucket_for(num_seqs: int, buckets: tuple[int, ...]) -> int | None:
    """Smallest bucket holding num_seqs, or None (run eagerly); pure. buckets: ascending."""
    for bucket in buckets:
        if bucket >= num_seqs:
            return bucket
    return None


@dataclass(frozen=True)
class DecodeInputs:
    """Host arrays of a decode step, one row per sequence."""

    input_ids: np.ndarray  # [n] int64
    positions: np.ndarray  # [n] int64
    slot_mapping: np.ndarray  # [n] int64
    block_tables: np.ndarray  # [n, num_blocks] int64
    context_lens: np.ndarray  # [n] int64

    def padded(self, num_rows: int) -> DecodeInputs:
        """Pure: the same step padded to num_rows rows, each extra row a copy of row 0."""
        num_seqs = self.input_ids.shape[0]
        if num_rows < num_seqs:
            raise ValueError(f"cannot pad {num_seqs} rows down to {num_rows}")
        take = np.concatenate((np.arange(num_seqs), np.zeros(num_rows - num_seqs, np.int64)))
        return DecodeInputs(self.input_ids[take], self.positions[take], self.slot_mapping[take],
                            self.block_tables[take], self.context_lens[take])


class _Graph:
    """One captured bucket: its graph, static inputs and static output."""

    def __init__(self, num_rows: int, max_blocks_per_seq: int, backend: GraphableBackend,
                 kv_cache: torch.Tensor) -> None:
        device = kv_cache.device
        self.num_rows = num_rows
        # [3, num_rows] int64: token ids, positions, slots; one upload per step.
        self.token_inputs = torch.zeros(3, num_rows, dtype=torch.int64, device=device)
        self.attn_plan = backend.new_graph_plan(num_rows, max_blocks_per_seq, kv_cache)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.logits: torch.Tensor | None = None  # [num_rows, vocab] float32, graph-owned


class DecodeGraphRunner:
    """Captures and replays decode steps of `model` per bucket. Engine thread only."""

    def __init__(self, model: torch.nn.Module, kv_cache: torch.Tensor,
                 backend: GraphableBackend, *, max_num_seqs: int, max_model_len: int) -> None:
        self._model = model
        self._kv_cache = kv_cache
        self._backend = backend
        self.buckets = graph_buckets(max_num_seqs)
        self._max_blocks_per_seq = -(-max_model_len // kv_cache.shape[3])
        self._graphs: dict[int, _Graph] = {}
        self._pool = torch.cuda.graph_pool_handle()
        self.num_captures = 0
        self.num_replays = 0

    def can_run(self, num_seqs: int, num_blocks: int) -> bool:
        return (bucket_for(num_seqs, self.buckets) is not None
                and num_blocks <= self._max_blocks_per_seq)

    def run(self, step: DecodeInputs) -> torch.Tensor:
        """Mutates the KV cache: the decode step's logits, [n, vocab] float32 (a view of the
        graph's output buffer: read it before the next run)."""
        num_seqs = step.input_ids.shape[0]
        bucket = bucket_for(num_seqs, self.buckets)
        if bucket is None:
            raise ValueError(f"{num_seqs} sequences exceed the largest bucket {self.buckets[-1]}")
        graph = self._graphs.get(bucket)
        if graph is None:
            graph = _Graph(bucket, self._max_blocks_per_seq, self._backend, self._kv_cache)
            self._graphs[bucket] = graph
        padded = step.padded(bucket)
        host = np.stack((padded.input_ids, padded.positions, padded.slot_mapping))
        graph.token_inputs.copy_(torch.from_numpy(host), non_blocking=True)
        self._backend.fill_graph_plan(graph.attn_plan, padded.block_tables, padded.context_lens,
                                      self._kv_cache)
        if graph.graph is None:
            self._capture(graph)
        assert graph.graph is not None and graph.logits is not None
        graph.graph.replay()
        self.num_replays += 1
        return graph.logits[:num_seqs]

    def _forward(self, graph: _Graph) -> torch.Tensor:
        input_ids, positions, slot_mapping = graph.token_inputs.unbind(0)
        hidden = self._model.run_layers(input_ids, positions, self._kv_cache, slot_mapping,
                                        self._backend, graph.attn_plan)
        return self._model.compute_logits(hidden)

    def _capture(self, graph: _Graph) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: compiles kernels, initialises cuBLAS
            self._forward(graph)
        torch.cuda.current_stream().wait_stream(side)
        cuda_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cuda_graph, pool=self._pool, capture_error_mode="thread_local"):
            graph.logits = self._forward(graph)
        graph.graph = cuda_graph
        self.num_captures += 1
