"""The micro-benchmark scripts' building blocks behave (no timing is asserted)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import numpy as np
import pytest

from fastswitch_worker.engine.attention import decode_batches
from fastswitch_worker.engine.kv_manager import KVLayout, KVManager

BENCHMARKS_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS_DIR))
    return importlib.import_module


def test_churn_scatters_baseline_blocks_and_block_groups_stay_few_extents(bench) -> None:
    swap_bandwidth = bench("swap_bandwidth")
    extents = {}
    for is_groups in (False, True):
        kv = KVManager(KVLayout(16, 640, 640, is_block_groups=is_groups, is_reuse=is_groups))
        swap_out, swap_in = swap_bandwidth.scattered_plans(kv, num_tokens=1024, seed=0)
        assert swap_out.num_blocks == swap_in.num_blocks == 64
        extents[is_groups] = (len(swap_out.extents), len(swap_in.extents))
    assert extents[False] == (64, 64)  # one extent per block: nothing contiguous survives
    assert max(extents[True]) <= 8


def test_reuse_copies_fewer_blocks_out_than_the_baseline(bench) -> None:
    reuse = bench("reuse")
    args = argparse.Namespace(prompt_len=32, num_new_tokens=48, preempt_every=16)
    baseline = reuse.growing("baseline", args, 1)
    fastswitch = reuse.growing("fastswitch", args, 1)
    assert baseline["num_preemptions"] == fastswitch["num_preemptions"] == 2
    assert fastswitch["swap_out_blocks"] < baseline["swap_out_blocks"]
    assert fastswitch["swap_out_copies"] < baseline["swap_out_copies"]


def test_decode_mixed_lengths_measures_steps_in_both_configurations(bench) -> None:
    mixed = bench("decode_mixed_lengths")
    assert len(decode_batches(np.array([40, 200]))) == 2  # so the two configurations differ
    step_ms = mixed.measure((40, 200), num_steps=2, num_threads=1)
    assert len(step_ms) == 2 and all(ms > 0 for ms in step_ms)
