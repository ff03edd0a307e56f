"""Engine step time of a decoding batch while another request's KV swaps, by configuration:

  no_swap           the batch decodes; the big request sits on the GPU, never switched;
  fastswitch        the big request is preempted and resumed over and over (--idle-steps
                    apart; 0 = back to back): block-group copies on the Swapper's threads
                    overlap the batch's steps. KV reuse is off (EngineConfig.kv_reuse), so every swap-out
                    moves all its bytes, as the baseline's do;
  fastswitch_reuse  the same with reuse on (the default): a swap-out right after a swap-in
                    copies only what changed, i.e. almost nothing here;
  baseline          vLLM v0: per-block x layer x K/V copies, synchronous before the forward
                    pass, so a step stalls for the whole copy.

The big request never computes while measured: it sits last in the running list and, after
setup, max_num_seqs and the token budget both equal the batch size (see build()), so every
configuration computes the same batch and only the copies differ. Compute threads are set
explicitly and equal everywhere. On a CPU both "GPU" and host pools are DRAM: a copy takes
memory bandwidth from the (memory-bound) decode, which a GPU's DMA over PCIe would not.

Model "bench-8b-kv-cpu": Llama-3-8B's 128 KiB of KV per token as 16 fp32 layers, small MLP.
fp32 because CPUs compute bf16 far slower (bf16 "bench-8b-kv" stepped ~2x slower here); the
bytes a switch moves stay Llama-3-8B's. --quick: 4 of the layers (32 KiB/token).

    python benchmarks/overlap.py --quick
    python benchmarks/overlap.py --out benchmarks/results/overlap_cpu.json
"""

from __future__ import annotations

import argparse
import os
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from _common import (
    RESULTS_DIR,
    dummy_model_dir,
    finish_record,
    print_table,
    run_record,
    set_threads,
    summarize_ms,
    synthetic_tokens,
    write_json,
)

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.kv_manager import SwapDirection
from fastswitch_worker.engine.sequence import RequestStatus, StopConditions

BIG = "big"
# (name, engine mode, KV reuse, switch the big request)
CONFIGS = (("no_swap", "fastswitch", True, False), ("fastswitch", "fastswitch", False, True),
           ("fastswitch_reuse", "fastswitch", True, True), ("baseline", "baseline", False, True))
FULL_MODEL = "bench-8b-kv-cpu"
# bench-8b-kv-cpu with 4 of its 16 layers: 32 KiB of KV per token instead of 128 KiB.
QUICK_MODEL_FIELDS = dict(vocab_size=512, hidden_size=256, intermediate_size=512,
                          num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=8,
                          head_dim=128, torch_dtype="float32")


def settle(engine: Engine) -> None:
    """Step until the big request has no copy in flight. Mutates engine."""
    while engine.requests[BIG].status in (RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPING_IN):
        engine.step()
    engine.drain_copies()


def build(model: str, mode: str, is_reuse: bool, args: argparse.Namespace,
          num_threads: int) -> Engine:
    """An engine whose running list is [batch..., big]: big prefilled, switched once so that
    it sits last, and starved by max_num_seqs = batch size."""
    engine = Engine(EngineConfig(
        model=model, load_format="dummy", device=args.device,
        dtype="bfloat16" if args.device == "cuda" else "float32", mode=mode,
        block_size=16, kv_cache_bytes=args.kv_cache_bytes, host_kv_bytes=args.kv_cache_bytes,
        max_num_batched_tokens=max(args.big_len, 512), max_num_seqs=args.batch_size,
        num_compute_threads=num_threads, kv_reuse=is_reuse))
    engine.add_request(BIG, synthetic_tokens(99, args.big_len),
                       stop=StopConditions(max_tokens=args.max_tokens, ignore_eos=True))
    engine.step()  # prefills the big request in one chunk
    engine.preempt(BIG)
    engine.step()
    settle(engine)
    for i in range(args.batch_size):
        engine.add_request(f"r{i}", synthetic_tokens(i, args.prompt_len),
                           stop=StopConditions(max_tokens=args.max_tokens, ignore_eos=True))
    engine.resume(BIG)
    for _ in range(4):  # the batch prefills, the big request comes back (last in line)
        engine.step()
    settle(engine)
    assert engine.requests[BIG].status is RequestStatus.RUNNING
    # From now on the batch's decodes fill the token budget exactly: a blocking swap-in
    # (baseline) would otherwise pull the big request into the batch past max_num_seqs.
    engine.scheduler.limits = replace(engine.scheduler.limits,
                                                  max_num_batched_tokens=args.batch_size)
    return engine


@dataclass
class Samples:
    """One configuration's measurements, pooled over rounds (mutated by measure_round)."""

    step_ms: list[float] = field(default_factory=list)
    copy_step_ms: list[float] = field(default_factory=list)  # a swap started or in flight
    round_mean_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    stall_ms: float = 0.0  # as the engine reports it (StepResult.stall_ms)
    num_swap_outs: int = 0
    num_swap_ins: int = 0
    swapped_bytes: dict[str, int] = field(default_factory=lambda: {"out": 0, "in": 0})
    num_big_request_tokens_computed: int = 0
    load_average_1_min: list[float] = field(default_factory=list)


def measure_round(engine: Engine, samples: Samples, *, num_steps: int, is_switching: bool,
                  num_idle_steps: int) -> None:
    """Step num_steps times; with switching, preempt the big request when it runs and resume
    it when it is swapped out, num_idle_steps steps after the previous switch finished (0:
    back to back). Mutates engine and samples."""
    big = engine.requests[BIG]
    totals = engine.swapper.totals
    start_bytes = {d: totals[d].num_bytes for d in SwapDirection}
    start_swaps = (engine.counters.num_swap_outs, engine.counters.num_swap_ins)
    samples.load_average_1_min.append(os.getloadavg()[0])
    round_ms = []
    start = time.perf_counter()
    num_idle_left = 0
    for _ in range(num_steps):
        is_copying = big.status in (RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPING_IN)
        if not is_switching or is_copying:
            pass
        elif num_idle_left > 0:  # the last switch finished; wait before the next one
            num_idle_left -= 1
        elif big.status is RequestStatus.RUNNING:
            engine.preempt(BIG)
            is_copying = True
            num_idle_left = num_idle_steps
        elif big.status is RequestStatus.SWAPPED:
            engine.resume(BIG)
            is_copying = True
            num_idle_left = num_idle_steps
        step_start = time.perf_counter()
        result = engine.step()
        step_ms = (time.perf_counter() - step_start) * 1e3
        samples.stall_ms += result.stall_ms
        samples.num_big_request_tokens_computed += sum(o.request_id == BIG
                                                       for o in result.outputs)
        round_ms.append(step_ms)
        if is_copying:
            samples.copy_step_ms.append(step_ms)
    samples.elapsed_s += time.perf_counter() - start
    engine.drain_copies()  # no copy of this round runs into another configuration's round
    samples.step_ms.extend(round_ms)
    samples.round_mean_ms.append(sum(round_ms) / len(round_ms))
    samples.num_swap_outs += engine.counters.num_swap_outs - start_swaps[0]
    samples.num_swap_ins += engine.counters.num_swap_ins - start_swaps[1]
    for direction in SwapDirection:
        samples.swapped_bytes[direction.value] += totals[direction].num_bytes - start_bytes[
            direction]


def report(samples: Samples, reference: Samples) -> dict[str, object]:
    """Summaries and ratios to the no-swap reference (same rounds, same contexts)."""
    figures: dict[str, object] = {}
    for name, values in (("step_ms", samples.step_ms),
                         ("step_ms_with_copy", samples.copy_step_ms)):
        summary = summarize_ms(values) if values else None
        figures[name] = summary
        if summary is not None:
            ref = summarize_ms(reference.step_ms)
            figures[f"{name}_ratio_to_no_swap"] = {k: summary[k] / ref[k]
                                                   for k in ("mean", "p50", "p99")}
    num_swaps = samples.num_swap_outs + samples.num_swap_ins
    # The time the switches added to the batch's steps, per swap (one direction, one request).
    figures["added_ms_per_swap"] = ((sum(samples.step_ms) - sum(reference.step_ms)) / num_swaps
                                    if num_swaps else None)
    figures["round_mean_ratio_to_no_swap"] = [
        m / r for m, r in zip(samples.round_mean_ms, reference.round_mean_ms, strict=True)]
    record = asdict(samples)
    record["step_ms_samples"] = [round(ms, 3) for ms in record.pop("step_ms")]
    del record["copy_step_ms"]
    record["swap_gb_per_s_of_wall_time"] = (sum(samples.swapped_bytes.values())
                                            / samples.elapsed_s / 1e9)
    return {**figures, **record}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4-layer variant, short run")
    parser.add_argument("--threads", type=int, default=1,
                        help="compute threads in every configuration (copies use their own)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--big-len", type=int, default=None, help="default 2048 (quick 512)")
    parser.add_argument("--num-steps", type=int, default=None,
                        help="measured steps per configuration and round; default 60 (quick 12)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds over all configurations, order rotated; default 3 (quick 2)")
    parser.add_argument("--idle-steps", type=int, default=0,
                        help="steps between the end of a switch and the next (0: back to back)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the real llama3-8b shape in bf16 (--quick: as on cpu)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "overlap_cpu.json")
    args = parser.parse_args()
    args.big_len = args.big_len or (512 if args.quick else 2048)
    args.num_steps = args.num_steps or (12 if args.quick else 60)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.max_tokens = args.rounds * args.num_steps + 64
    # Each pool: the big request plus the batch's growing contexts, with room to spare.
    args.kv_cache_bytes = (128 if args.quick else 512) << 20
    num_threads = set_threads(args.threads)
    record = run_record(num_threads=num_threads, is_quick=args.quick)
    samples = {name: Samples() for name, *_ in CONFIGS}
    with ExitStack() as stack:
        model = (stack.enter_context(dummy_model_dir(**QUICK_MODEL_FIELDS)) if args.quick
                 else "llama3-8b" if args.device == "cuda" else FULL_MODEL)
        # All engines live at once (idle ones cost nothing but memory), so rounds can rotate
        # the order: load from elsewhere and drift then fall on every configuration alike.
        engines = {name: build(model, mode, is_reuse, args, num_threads)
                   for name, mode, is_reuse, _ in CONFIGS}
        for round_index in range(args.rounds):
            order = CONFIGS[round_index % len(CONFIGS):] + CONFIGS[:round_index % len(CONFIGS)]
            for name, _, _, is_switching in order:
                measure_round(engines[name], samples[name], num_steps=args.num_steps,
                              is_switching=is_switching, num_idle_steps=args.idle_steps)
        kv_bytes_per_token = engines["no_swap"].block_bytes // engines["no_swap"].block_size
        for engine in engines.values():
            engine.close()
    finish_record(record)
    results = {name: report(s, samples["no_swap"]) for name, s in samples.items()}
    rows = []
    for name, figures in results.items():
        assert figures["num_big_request_tokens_computed"] == 0
        for column in ("step_ms", "step_ms_with_copy"):
            summary = figures[column]
            is_same_steps = column != "step_ms" and summary is not None and (
                summary["num_samples"] == figures["step_ms"]["num_samples"])
            if summary is not None and not is_same_steps:  # printed once when all steps copy
                ratios = figures[f"{column}_ratio_to_no_swap"]
                rows.append([name, column, summary["num_samples"], summary["mean"],
                             summary["p50"], summary["p99"], ratios["mean"], ratios["p99"],
                             figures["num_swap_outs"] + figures["num_swap_ins"],
                             figures["added_ms_per_swap"] or 0.0])
    print_table(["config", "steps", "n", "mean ms", "p50 ms", "p99 ms", "mean/no_swap",
                 "p99/no_swap", "swaps", "added ms/swap"], rows)
    write_json(args.out, {
        "benchmark": "overlap",
        "run": record,
        "settings": {"model": "4-layer bench-8b-kv-cpu variant" if args.quick else model,
                     "device": args.device,
                     "dtype": "bfloat16" if args.device == "cuda" else "float32",
                     "kv_bytes_per_token": kv_bytes_per_token,
                     "block_size": 16, "num_compute_threads": num_threads,
                     "num_copy_threads_fastswitch": "1 per direction (Swapper)",
                     "batch_size": args.batch_size, "prompt_len": args.prompt_len,
                     "big_request_tokens": args.big_len,
                     "num_steps_per_round": args.num_steps, "num_rounds": args.rounds,
                     "num_idle_steps_between_switches": args.idle_steps,
                     "configs": {c[0]: {"mode": c[1], "is_reuse": c[2], "is_switching": c[3]}
                                 for c in CONFIGS},
                     "step_ms_with_copy": "steps that start a swap or run while one is in "
                                          "flight (baseline: the steps that copy)"},
        "results": results,
    })


if __name__ == "__main__":
    main()
