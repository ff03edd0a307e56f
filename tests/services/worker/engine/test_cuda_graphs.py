"""Decode-graph buckets and padding (pure; the graphs themselves are in test_engine_cuda.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fastswitch_worker.engine.cuda_graphs import (
    DEFAULT_BUCKETS,
    DecodeInputs,
    bucket_for,
    graph_buckets,
)


def test_buckets_end_at_the_batch_limit() -> None:
    assert graph_buckets(64) == (1, 2, 4, 8, 16, 24, 32, 48, 64)
    assert graph_buckets(50) == (1, 2, 4, 8, 16, 24, 32, 48, 50)
    assert graph_buckets(1) == (1,)
    assert graph_buckets(1000)[:-1] == DEFAULT_BUCKETS


@pytest.mark.parametrize(("num_seqs", "bucket"), [(1, 1), (3, 4), (4, 4), (17, 24), (48, 48),
                                                 (49, 50), (51, None)])
def test_a_batch_runs_in_the_smallest_bucket_holding_it(num_seqs: int, bucket: int | None) -> None:
    assert bucket_for(num_seqs, graph_buckets(50)) == bucket


def test_padding_repeats_row_zero_so_extra_rows_touch_only_its_slot_and_blocks() -> None:
    step = DecodeInputs(input_ids=np.array([5, 6, 7]), positions=np.array([9, 3, 12]),
                        slot_mapping=np.array([41, 18, 77]),
                        block_tables=np.array([[2, 10, 0], [4, 0, 0], [6, 8, 19]]),
                        context_lens=np.array([10, 4, 13]))
    padded = step.padded(8)
    assert padded.input_ids.tolist() == [5, 6, 7] + [5] * 5
    assert padded.positions.tolist() == [9, 3, 12] + [9] * 5
    assert padded.slot_mapping.tolist() == [41, 18, 77] + [41] * 5
    assert padded.context_lens.tolist() == [10, 4, 13] + [10] * 5
    assert padded.block_tables[3:].tolist() == [[2, 10, 0]] * 5
    assert step.padded(3).slot_mapping.tolist() == [41, 18, 77]
    with pytest.raises(ValueError, match="cannot pad 3 rows down to 2"):
        step.padded(2)
