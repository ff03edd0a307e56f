"""Prefill and decode throughput (tokens/s) of the engine on this machine, both switch modes.

Prefill: N prompts of L tokens are added at once; the time until every one has its first token.
Decode: B requests (ignore_eos) decode in steady state; tokens/s over K steps after a warm-up.
No preemption happens here, so FastSwitch and baseline differ only in block allocation (block
groups vs single 16-token blocks) and in nothing else: the compute threads are set explicitly
and are the same in both modes (EngineConfig.num_compute_threads).

    python benchmarks/engine_throughput.py --quick
    python benchmarks/engine_throughput.py --out benchmarks/results/engine_throughput_cpu.json
    python benchmarks/engine_throughput.py --device cuda   # llama3-8b, bf16, dummy weights

On CUDA (engine_throughput_gpu.py): decode step time at batch 1, 4, 32, 128 and prefill tokens/s
of one 512- and one 2,048-token prompt, each beside its memory-bandwidth and bf16 compute
floors (engine_floors.py; --hbm-gbps, --bf16-tflops).
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from pathlib import Path

from _common import (
    RESULTS_DIR,
    dummy_model_dir,
    finish_record,
    print_table,
    run_record,
    set_threads,
    synthetic_tokens,
    write_json,
)
from engine_throughput_gpu import add_gpu_arguments, main_gpu

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import StopConditions

MODES = ("fastswitch", "baseline")
# A bigger dummy Llama than "tiny" (~25M parameters), still cheap on two cores.
SMALL_MODEL_FIELDS = dict(vocab_size=1024, hidden_size=512, intermediate_size=1408,
                          num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=4,
                          head_dim=64, torch_dtype="float32")


def make_engine(model: str, mode: str, *, num_threads: int, max_num_batched_tokens: int,
                max_num_seqs: int) -> Engine:
    return Engine(EngineConfig(
        model=model, load_format="dummy", device="cpu", dtype="float32", mode=mode,
        block_size=16, kv_cache_bytes=256 << 20, host_kv_bytes=16 << 20,
        max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
        num_compute_threads=num_threads))


def measure_prefill(engine: Engine, *, batch_size: int, prompt_len: int) -> dict[str, float]:
    """Add `batch_size` prompts; time the steps until each has its first token. Mutates engine
    (the requests are aborted afterwards)."""
    ids = [f"p{batch_size}-{i}" for i in range(batch_size)]
    for i, request_id in enumerate(ids):
        engine.add_request(request_id, synthetic_tokens(i, prompt_len),
                           stop=StopConditions(max_tokens=1, ignore_eos=True))
    num_steps = 0
    start = time.perf_counter()
    while engine.has_unfinished_requests():
        engine.step()
        num_steps += 1
    elapsed_s = time.perf_counter() - start
    num_tokens = batch_size * prompt_len
    return {"num_prompt_tokens": num_tokens, "num_steps": num_steps, "elapsed_s": elapsed_s,
            "tokens_per_s": num_tokens / elapsed_s}


def measure_decode(engine: Engine, *, batch_size: int, prompt_len: int, num_warmup_steps: int,
                   num_steps: int) -> dict[str, float]:
    """Prefill `batch_size` requests, warm up, then time `num_steps` pure decode steps."""
    ids = [f"d{batch_size}-{i}" for i in range(batch_size)]
    max_tokens = num_warmup_steps + num_steps + 2
    for i, request_id in enumerate(ids):
        engine.add_request(request_id, synthetic_tokens(i, prompt_len),
                           stop=StopConditions(max_tokens=max_tokens, ignore_eos=True))
    while any(engine.requests[r].is_prefilling for r in ids):
        engine.step()
    for _ in range(num_warmup_steps):
        engine.step()
    num_tokens = 0
    start = time.perf_counter()
    for _ in range(num_steps):
        result = engine.step()
        num_tokens += sum(len(o.new_token_ids) for o in result.outputs)
    elapsed_s = time.perf_counter() - start
    for request_id in ids:
        engine.abort(request_id)
    engine.step()
    return {"num_generated_tokens": num_tokens, "num_steps": num_steps, "elapsed_s": elapsed_s,
            "tokens_per_s": num_tokens / elapsed_s, "step_ms": elapsed_s / num_steps * 1e3,
            "context_len_start": prompt_len + num_warmup_steps + 1,
            "context_len_end": prompt_len + num_warmup_steps + num_steps + 1}


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median tokens/s, plus every run's tokens/s."""
    ordered = sorted(runs, key=lambda run: run["tokens_per_s"])
    return {**ordered[len(ordered) // 2],
            "tokens_per_s_all_repeats": [run["tokens_per_s"] for run in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, fewer sizes (seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads (both modes)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=None, help=(
        "default results/engine_throughput_cpu.json (cuda: engine_throughput_cuda.json)"))
    add_gpu_arguments(parser)
    args = parser.parse_args()
    if args.device == "cuda":
        main_gpu(args, measure_prefill=measure_prefill, median_run=median_run)
        return
    args.out = args.out or RESULTS_DIR / "engine_throughput_cpu.json"
    num_threads = set_threads(args.threads)
    batch_sizes = (1, 8) if args.quick else (1, 8, 32)
    prompt_len = 64 if args.quick else 128
    decode_prompt_len = 32
    num_warmup_steps, num_steps = (2, 8) if args.quick else (5, 40)
    num_repeats = 1 if args.quick else 4
    max_num_batched_tokens = 2048
    models = ("tiny",) if args.quick else ("tiny", "small-25m")
    record = run_record(num_threads=num_threads, is_quick=args.quick)
    rows: list[dict[str, object]] = []
    with ExitStack() as stack:
        model_paths = {"tiny": "tiny"}
        if "small-25m" in models:
            model_paths["small-25m"] = stack.enter_context(dummy_model_dir(**SMALL_MODEL_FIELDS))
        for model in models:
            # Both modes' engines side by side, measured in alternation, so drift and load
            # from elsewhere fall on both alike; medians over repeats.
            engines = {mode: make_engine(model_paths[model], mode, num_threads=num_threads,
                                         max_num_batched_tokens=max_num_batched_tokens,
                                         max_num_seqs=max(batch_sizes)) for mode in MODES}
            for engine in engines.values():  # warm-up: first passes pay one-time costs
                measure_prefill(engine, batch_size=max(batch_sizes), prompt_len=prompt_len)
                measure_decode(engine, batch_size=max(batch_sizes), prompt_len=decode_prompt_len,
                               num_warmup_steps=1, num_steps=2)
            for batch_size in batch_sizes:
                runs: dict[str, list[tuple[dict, dict]]] = {mode: [] for mode in MODES}
                for repeat in range(num_repeats):  # who goes first alternates: it runs warmer
                    for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
                        engine = engines[mode]
                        prefill = measure_prefill(engine, batch_size=batch_size,
                                                  prompt_len=prompt_len)
                        decode = measure_decode(engine, batch_size=batch_size,
                                                prompt_len=decode_prompt_len,
                                                num_warmup_steps=num_warmup_steps,
                                                num_steps=num_steps)
                        runs[mode].append((prefill, decode))
                for mode in MODES:
                    rows.append({"model": model, "mode": mode, "batch_size": batch_size,
                                 "prefill_prompt_len": prompt_len,
                                 "prefill": median_run([r[0] for r in runs[mode]]),
                                 "decode_prompt_len": decode_prompt_len,
                                 "decode": median_run([r[1] for r in runs[mode]])})
            for engine in engines.values():
                engine.close()
    finish_record(record)
    print_table(
        ["model", "mode", "batch", "prefill tok/s", "decode tok/s", "decode ms/step"],
        [[r["model"], r["mode"], r["batch_size"], r["prefill"]["tokens_per_s"],
          r["decode"]["tokens_per_s"], r["decode"]["step_ms"]] for r in rows])
    write_json(args.out, {
        "benchmark": "engine_throughput",
        "run": record,
        "settings": {"device": "cpu", "dtype": "float32", "block_size": 16,
                     "num_compute_threads": num_threads,
                     "max_num_batched_tokens": max_num_batched_tokens,
                     "models": {"tiny": "preset tiny (4 layers, hidden 128)",
                                "small-25m": SMALL_MODEL_FIELDS},
                     "num_decode_warmup_steps": num_warmup_steps,
                     "num_decode_steps": num_steps, "num_repeats": num_repeats,
                     "figures": "median of the repeats by tokens/s"},
        "results": rows,
    })


if __name__ == "__main__":
    main()
