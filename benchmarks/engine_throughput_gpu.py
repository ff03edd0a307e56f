"""engine_throughput.py --device cuda: the engine's step times on a GPU beside their floors.

Decode: B requests with a D-token context (default 512) decode in steady state; the median step
over the measured steps, after warm-up steps that also capture the CUDA graph of B's bucket.
Prefill: one prompt of L tokens in one step (the token budget is the largest L); tokens/s.
Both switch modes, engines side by side; no preemption happens, so the two must be equal.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import (
    RESULTS_DIR,
    finish_record,
    print_table,
    run_record,
    synthetic_tokens,
    write_json,
)
from engine_floors import H200_BF16_TFLOPS, H200_HBM_GBPS, ModelShape, step_floors_ms

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.sequence import StopConditions

MODES = ("fastswitch", "baseline")


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("--device cuda")
    group.add_argument("--model", default="llama3-8b", help="preset or checkpoint (dummy weights)")
    group.add_argument("--dtype", default="bfloat16")
    group.add_argument("--batch-sizes", default="1,4,32,128")
    group.add_argument("--prefill-lens", default="512,2048")
    group.add_argument("--decode-context", type=int, default=512, help="prompt tokens per decode")
    group.add_argument("--num-steps", type=int, default=30, help="measured decode steps")
    group.add_argument("--kv-cache-gib", type=float, default=16.0, help="GPU KV pool per engine")
    group.add_argument("--hbm-gbps", type=float, default=H200_HBM_GBPS)
    group.add_argument("--bf16-tflops", type=float, default=H200_BF16_TFLOPS)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def measure_decode_steps(engine: Engine, *, batch_size: int, prompt_len: int,
                         num_warmup_steps: int, num_steps: int) -> dict[str, float]:
    """Prefill `batch_size` requests, warm up (captures the bucket's graph), then time each of
    `num_steps` decode steps (every step ends in the sampler's one device sync)."""
    ids = [f"g{batch_size}-{i}" for i in range(batch_size)]
    for i, request_id in enumerate(ids):
        engine.add_request(request_id, synthetic_tokens(i, prompt_len), stop=StopConditions(
            max_tokens=num_warmup_steps + num_steps + 2, ignore_eos=True))
    while any(engine.requests[r].is_prefilling for r in ids):
        engine.step()
    for _ in range(num_warmup_steps):
        engine.step()
    step_ms = []
    num_tokens = 0
    for _ in range(num_steps):
        start = time.perf_counter()
        result = engine.step()
        step_ms.append((time.perf_counter() - start) * 1e3)
        num_tokens += sum(len(o.new_token_ids) for o in result.outputs)
    for request_id in ids:
        engine.abort(request_id)
    engine.step()
    median_ms = statistics.median(step_ms)
    return {"num_generated_tokens": num_tokens, "num_steps": num_steps,
            "step_ms_median": median_ms, "step_ms_mean": statistics.fmean(step_ms),
            "step_ms_min": min(step_ms), "tokens_per_s": batch_size / median_ms * 1e3,
            "context_len_start": prompt_len + num_warmup_steps + 1,
            "context_len_end": prompt_len + num_warmup_steps + num_steps + 1}


def main_gpu(args: argparse.Namespace, *, measure_prefill: Callable,
             median_run: Callable) -> None:
    is_cuda = args.device == "cuda"
    if is_cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda needs a CUDA device")
    out = args.out or RESULTS_DIR / "engine_throughput_cuda.json"
    batch_sizes, prefill_lens = _ints(args.batch_sizes), _ints(args.prefill_lens)
    record = run_record(num_threads=torch.get_num_threads(), is_quick=False)
    engines = {mode: Engine(EngineConfig(
        model=args.model, load_format="dummy", device=args.device, dtype=args.dtype, mode=mode,
        block_size=16, kv_cache_bytes=int(args.kv_cache_gib * (1 << 30)), host_kv_bytes=1 << 30,
        max_num_batched_tokens=max(prefill_lens + batch_sizes), max_num_seqs=max(batch_sizes)))
        for mode in MODES}
    any_engine = engines[MODES[0]]
    shape = ModelShape.of(any_engine.model, any_engine.block_bytes // any_engine.block_size)
    floors = dict(hbm_gbps=args.hbm_gbps, bf16_tflops=args.bf16_tflops)
    rows: list[dict[str, object]] = []
    for engine in engines.values():  # warm-up: kernels compile, cuBLAS initialises
        measure_prefill(engine, batch_size=1, prompt_len=max(prefill_lens))
    for prompt_len in prefill_lens:
        for mode, engine in engines.items():
            run = median_run([measure_prefill(engine, batch_size=1, prompt_len=prompt_len)
                              for _ in range(3)])
            floor = step_floors_ms(shape, query_lens=[prompt_len], context_lens=[prompt_len],
                                   num_sampled=1, **floors)
            rows.append({"kind": "prefill", "mode": mode, "num_tokens": prompt_len,
                         "tokens_per_s": run["tokens_per_s"], "step_ms": run["elapsed_s"] * 1e3,
                         **floor, "run": run})
    for batch_size in batch_sizes:
        for mode, engine in engines.items():
            run = measure_decode_steps(engine, batch_size=batch_size,
                                       prompt_len=args.decode_context, num_warmup_steps=5,
                                       num_steps=args.num_steps)
            mean_context = (run["context_len_start"] + run["context_len_end"]) / 2
            floor = step_floors_ms(shape, query_lens=[1] * batch_size,
                                   context_lens=[round(mean_context)] * batch_size,
                                   num_sampled=batch_size, **floors)
            rows.append({"kind": "decode", "mode": mode, "batch_size": batch_size,
                         "tokens_per_s": run["tokens_per_s"], "step_ms": run["step_ms_median"],
                         **floor, "run": run})
    runner = any_engine.runner
    settings = {"device": torch.cuda.get_device_name() if is_cuda else args.device, "model": args.model, "dtype": args.dtype,
                "block_size": 16, "attention_backend": runner.backend.name,
                "cuda_graphs": runner.graphs is not None,
                "decode_context_tokens": args.decode_context, "num_decode_steps": args.num_steps,
                "hbm_gbps": args.hbm_gbps, "bf16_tflops": args.bf16_tflops,
                "figures": "decode: median step; prefill: median of 3 one-prompt steps"}
    for engine in engines.values():
        engine.close()
    finish_record(record)
    print_table(
        ["kind", "mode", "size", "step ms", "tok/s", "mem floor ms", "bf16 floor ms", "x floor"],
        [[r["kind"], r["mode"], r.get("batch_size", r.get("num_tokens")), r["step_ms"],
          r["tokens_per_s"], r["memory_floor_ms"], r["compute_floor_ms"],
          r["step_ms"] / r["floor_ms"]] for r in rows])
    write_json(Path(out), {"benchmark": "engine_throughput", "run": record, "settings": settings,
                           "results": rows})
