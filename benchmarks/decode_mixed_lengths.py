"""Decode step time on CPU when the batch's contexts differ in length: attention in batches of
similar length (the engine's default) against one batch padded to the longest context.

The reference attention backend pads a decode batch's keys to its longest context, so a batch
of one 900-token and four 60-token decodes gathered and attended 4,500 key rows per layer for
1,140 real ones. `attention.decode_batches` splits such batches (attention.py explains the
rule); `one_padded_batch` turns the split off (DECODE_BATCH_MIN_FILL = 0) to measure what it
saves, in the same process, the two configurations alternating. Model: bench-8b-kv-cpu (the
8B's 128 KiB of KV per token, small compute), where gathering KV dominates a step.

    python benchmarks/decode_mixed_lengths.py --quick
    python benchmarks/decode_mixed_lengths.py --out benchmarks/results/decode_mixed_lengths_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import (
    RESULTS_DIR,
    finish_record,
    print_table,
    run_record,
    set_threads,
    synthetic_tokens,
    write_json,
)

from fastswitch_worker.engine import attention
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import StopConditions

MODEL = "bench-8b-kv-cpu"
# (name, prompt lengths): the contexts the measured decode steps start from.
MIXES = (
    ("equal", (300, 300, 300, 300)),
    ("mixed", (600, 80, 250, 120)),
    ("one_long", (900, 60, 60, 60, 60)),
    ("spread_8", tuple(60 * (i + 1) for i in range(8))),
)
KV_BYTES_PER_TOKEN = 128 << 10  # bench-8b-kv-cpu
CONFIGS = (("batched_by_length", attention.DECODE_BATCH_MIN_FILL), ("one_padded_batch", 0.0))


def measure(prompt_lens: tuple[int, ...], *, num_steps: int, num_threads: int) -> list[float]:
    """Step times (ms) of `num_steps` pure decode steps of the given contexts."""
    engine = Engine(EngineConfig(
        model=MODEL, load_format="dummy", device="cpu", dtype="float32", block_size=16,
        # Room for every context and its growth, with slack for block groups reserving ahead.
        kv_cache_bytes=2 * (sum(prompt_lens) + 64 * len(prompt_lens)) * KV_BYTES_PER_TOKEN,
        host_kv_bytes=16 << 20,
        max_num_batched_tokens=max(2048, sum(prompt_lens)), num_compute_threads=num_threads))
    for i, prompt_len in enumerate(prompt_lens):
        engine.add_request(f"r{i}", synthetic_tokens(i, prompt_len),
                           stop=StopConditions(max_tokens=num_steps + 4, ignore_eos=True))
    while any(request.is_prefilling for request in engine.requests.values()):
        engine.step()
    engine.step()  # warm-up decode
    step_ms = []
    for _ in range(num_steps):
        start = time.perf_counter()
        engine.step()
        step_ms.append((time.perf_counter() - start) * 1e3)
    engine.close()
    return step_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "decode_mixed_lengths_cpu.json")
    args = parser.parse_args()
    num_threads = set_threads(args.threads)
    num_steps, num_repeats = (4, 1) if args.quick else (20, 3)
    record = run_record(num_threads=num_threads, is_quick=args.quick)
    results: dict[str, dict[str, object]] = {}
    default_fill = attention.DECODE_BATCH_MIN_FILL
    try:
        for mix, prompt_lens in MIXES:
            samples: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
            for _ in range(num_repeats):  # alternate, so drift in the machine's speed hits both
                for name, min_fill in CONFIGS:
                    attention.DECODE_BATCH_MIN_FILL = min_fill
                    samples[name] += measure(prompt_lens, num_steps=num_steps, num_threads=num_threads)
            results[mix] = {"prompt_lens": list(prompt_lens),
                            **{name: {"median_step_ms": statistics.median(values),
                                      "min_step_ms": min(values), "num_steps": len(values)}
                               for name, values in samples.items()}}
    finally:
        attention.DECODE_BATCH_MIN_FILL = default_fill
    finish_record(record)
    rows = []
    for mix, figures in results.items():
        batched, padded = figures["batched_by_length"], figures["one_padded_batch"]
        rows.append([mix, len(figures["prompt_lens"]), padded["median_step_ms"],
                     batched["median_step_ms"], padded["median_step_ms"] / batched["median_step_ms"]])
    print_table(["contexts", "decodes", "one padded batch (ms)", "batched by length (ms)", "speedup"],
                rows)
    write_json(args.out, {"benchmark": "decode_mixed_lengths", "run": record,
                          "settings": {"model": MODEL, "num_steps": num_steps,
                                       "num_repeats": num_repeats,
                                       "decode_batch_min_fill": default_fill,
                                       "decode_batch_min_padding": attention.DECODE_BATCH_MIN_PADDING},
                          "results": results})


if __name__ == "__main__":
    main()
