"""What one forward pass attends to, as host arrays built once per step (no per-token Python).

A batch is flattened: the new tokens of all sequences are rows of one [num_tokens, ...] tensor.
The new tokens of sequence i are its positions context_lens[i] - query_len .. context_lens[i] - 1,
so a full prefill, a prefill chunk that attends to already-cached context and a decode step are
one case. Every attention backend (attention_backends.py) plans from this same metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch


def _int64_array(values: object) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(values, dtype=np.int64)


def pad_block_tables(tables: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence block id lists -> ([num_seqs, max_len] int64 padded with 0, [num_seqs] lens)."""
    rows = [_int64_array(table).reshape(-1) for table in tables]
    lens = np.fromiter((row.shape[0] for row in rows), dtype=np.int64, count=len(rows))
    padded = np.zeros((len(rows), int(lens.max()) if len(rows) else 0), dtype=np.int64)
    for index, row in enumerate(rows):
        padded[index, : row.shape[0]] = row
    return padded, lens


@dataclass(frozen=True)
class AttentionMetadata:
    """Where a batch's new tokens go in the KV cache and what each sequence attends to.

    Built by model_runner.prepare_inputs (or directly in tests). Sequences and tables may be
    given as tuples/lists/tensors; they are stored as host numpy arrays, validated once.
    """

    # [num_tokens] int64, on the cache's device: flat slot gpu_block_id * block_size + offset.
    slot_mapping: torch.Tensor
    # [num_seqs + 1] int64; seq i's new tokens are rows query_start_locs[i]:query_start_locs[i + 1].
    query_start_locs: np.ndarray
    # [num_seqs] int64: tokens whose K/V is valid after this step (cached before + new now).
    context_lens: np.ndarray
    # [num_seqs, max_num_blocks] int64 gpu block ids in token order, rows padded with 0; or a
    # sequence of per-seq id lists/tensors (padded here).
    block_tables: np.ndarray
    # [num_seqs] int64: how many leading entries of each block_tables row are real.
    num_table_blocks: np.ndarray | None = None

    def __post_init__(self) -> None:
        query_start_locs = _int64_array(self.query_start_locs).reshape(-1)
        context_lens = _int64_array(self.context_lens).reshape(-1)
        if isinstance(self.block_tables, np.ndarray) and self.block_tables.ndim == 2:
            tables = self.block_tables.astype(np.int64, copy=False)
            lens = (np.full(tables.shape[0], tables.shape[1], dtype=np.int64)
                    if self.num_table_blocks is None else _int64_array(self.num_table_blocks))
        else:
            tables, lens = pad_block_tables(self.block_tables)
        object.__setattr__(self, "query_start_locs", query_start_locs)
        object.__setattr__(self, "context_lens", context_lens)
        object.__setattr__(self, "block_tables", tables)
        object.__setattr__(self, "num_table_blocks", lens)
        self._validate()

    def _validate(self) -> None:
        num_seqs = self.context_lens.shape[0]
        if self.query_start_locs.shape[0] != num_seqs + 1 or self.block_tables.shape[0] != num_seqs:
            raise ValueError(
                f"{num_seqs} context_lens need {num_seqs + 1} query_start_locs and {num_seqs} "
                f"block_tables, got {self.query_start_locs.shape[0]} and "
                f"{self.block_tables.shape[0]}"
            )
        if self.query_start_locs[0] != 0:
            raise ValueError("query_start_locs must start at 0")
        query_lens = self.query_lens
        bad = np.flatnonzero((query_lens < 1) | (query_lens > self.context_lens))
        if bad.size:
            seq_index = int(bad[0])
            raise ValueError(
                f"seq {seq_index}: query_len {int(query_lens[seq_index])} must be in [1, "
                f"context_len {int(self.context_lens[seq_index])}]"
            )
        if tuple(self.slot_mapping.shape) != (self.num_tokens,):
            raise ValueError(
                f"slot_mapping must have shape ({self.num_tokens},), got "
                f"{tuple(self.slot_mapping.shape)}"
            )

    @property
    def num_seqs(self) -> int:
        return int(self.context_lens.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.query_start_locs[-1])

    @property
    def query_lens(self) -> np.ndarray:
        """[num_seqs] int64 new tokens per sequence."""
        return np.diff(self.query_start_locs)

    @property
    def is_all_decode(self) -> bool:
        """True when every sequence has exactly one new token (a decode step)."""
        return self.num_tokens == self.num_seqs

    def check_block_tables(self, block_size: int) -> np.ndarray:
        """[num_seqs] blocks each sequence's context needs; raises ValueError if a table is short."""
        num_blocks = -(-self.context_lens // block_size)
        short = np.flatnonzero(num_blocks > self.num_table_blocks)
        if short.size:
            seq_index = int(short[0])
            raise ValueError(
                f"seq {seq_index}: block table has {int(self.num_table_blocks[seq_index])} "
                f"blocks, context_len {int(self.context_lens[seq_index])} needs "
                f"{int(num_blocks[seq_index])} blocks of {block_size} tokens"
            )
        return num_blocks


def token_positions(query_start_locs: np.ndarray, context_lens: np.ndarray) -> np.ndarray:
    """[num_tokens] int64 position of every new token of the flattened batch; pure."""
    query_lens = np.diff(query_start_locs)
    first_positions = context_lens - query_lens  # per seq
    num_tokens = int(query_start_locs[-1])
    # Row r of seq i sits at first_positions[i] + (r - query_start_locs[i]).
    return np.arange(num_tokens, dtype=np.int64) + np.repeat(
        first_positions - query_start_locs[:-1], query_lens)


def slot_mapping_of(block_tables: np.ndarray, query_start_locs: np.ndarray,
                    positions: np.ndarray, block_size: int) -> np.ndarray:
    """[num_tokens] int64 cache slot of every new token, from its sequence's table; pure."""
    seq_of_token = np.repeat(np.arange(block_tables.shape[0]), np.diff(query_start_locs))
    block_ids = block_tables[seq_of_token, positions // block_size]
    return block_ids * block_size + positions % block_size
