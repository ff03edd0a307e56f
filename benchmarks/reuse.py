"""Bytes swapped out with and without KV reuse, in two scenarios driven through the engine:

  growing     one request decodes and is preempted + resumed every --preempt-every tokens;
  multi_turn  a conversation: turn k+1's prompt = turn k's prompt + its answer + new user
              tokens; every turn is preempted + resumed every --preempt-every answer tokens.

Configurations (16-token blocks in all three):
  baseline             vLLM v0 mode: every swap-out copies the whole context, nothing is kept;
                       each turn prefills its whole prompt;
  fastswitch_no_reuse  FastSwitch mode (block groups, async copies) with EngineConfig(kv_reuse=False)
                       and no conversation id: isolates what reuse alone saves;
  fastswitch           FastSwitch mode as shipped: a host copy stays valid after swap-in, so a
                       swap-out copies only the blocks written since (from the last, partial
                       one); a finished turn's KV stays on the host (that "retire" copy counts
                       in the swapped-out total and is also reported apart) and the next turn
                       swaps it in instead of prefilling it.
Figures come from engine.swapper.totals and engine.counters. Model: preset "tiny" (the ratios
do not depend on KV bytes per token; blocks are reported too).

    python benchmarks/reuse.py --quick
    python benchmarks/reuse.py --out benchmarks/results/reuse_cpu.json
"""

from __future__ import annotations

import argparse
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

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.kv_manager import SwapDirection
from fastswitch_worker.engine.sequence import Request, RequestStatus, StopConditions

CONFIGS = ("baseline", "fastswitch_no_reuse", "fastswitch")


def make_engine(config: str, num_threads: int) -> Engine:
    mode = "baseline" if config == "baseline" else "fastswitch"
    engine = Engine(EngineConfig(
        model="tiny", device="cpu", mode=mode, block_size=16, kv_cache_bytes=64 << 20,
        host_kv_bytes=64 << 20, max_num_batched_tokens=2048, num_compute_threads=num_threads,
        kv_reuse=config != "fastswitch_no_reuse"))
    return engine


def step_until(engine: Engine, request: Request, status: RequestStatus) -> None:
    while request.status is not status:
        engine.step()


def run_with_preemptions(engine: Engine, request: Request, preempt_every: int) -> tuple[int, int]:
    """Step until the request finishes, preempting and resuming it every `preempt_every`
    generated tokens. Mutates engine; returns the number of preemptions and the bytes copied
    out when it finished (FastSwitch keeps a finished turn's KV on the host: "retire")."""
    out_totals = engine.swapper.totals[SwapDirection.OUT]
    num_preemptions = 0
    num_since_preempt = 0
    out_bytes_before_finish = out_totals.num_bytes
    while request.finish_reason is None:
        result = engine.step()
        num_since_preempt += sum(len(o.new_token_ids) for o in result.outputs
                                 if o.request_id == request.request_id)
        if num_since_preempt >= preempt_every and request.finish_reason is None:
            engine.preempt(request.request_id)
            step_until(engine, request, RequestStatus.SWAPPED)
            engine.resume(request.request_id)
            step_until(engine, request, RequestStatus.RUNNING)
            num_preemptions += 1
            num_since_preempt = 0
            out_bytes_before_finish = out_totals.num_bytes
    engine.drain_copies()
    return num_preemptions, out_totals.num_bytes - out_bytes_before_finish


def figures(engine: Engine, *, num_preemptions: int, num_prefilled_tokens: int,
            retire_bytes: int) -> dict:
    totals = engine.swapper.totals
    block_bytes = engine.block_bytes
    out, into = totals[SwapDirection.OUT], totals[SwapDirection.IN]
    preemption_bytes = out.num_bytes - retire_bytes
    return {"num_preemptions": num_preemptions,
            "swap_out_bytes": out.num_bytes, "swap_out_blocks": out.num_bytes // block_bytes,
            "preemption_swap_out_bytes": preemption_bytes,
            "preemption_swap_out_blocks": preemption_bytes // block_bytes,
            "retire_swap_out_bytes": retire_bytes,
            "num_retired_turns": engine.counters.num_retired_turns,
            "swap_out_jobs": out.num_jobs, "swap_out_copies": out.num_copies,
            "swap_in_bytes": into.num_bytes, "swap_in_blocks": into.num_bytes // block_bytes,
            "swap_in_jobs": into.num_jobs, "swap_in_copies": into.num_copies,
            "reused_bytes_counter": engine.counters.reused_bytes,
            "num_reused_prompt_tokens": engine.counters.num_reused_prompt_tokens,
            "num_prefilled_prompt_tokens": num_prefilled_tokens, "block_bytes": block_bytes}


def growing(config: str, args: argparse.Namespace, num_threads: int) -> dict:
    engine = make_engine(config, num_threads)
    request = engine.add_request("grow", synthetic_tokens(0, args.prompt_len),
                                 stop=StopConditions(max_tokens=args.num_new_tokens,
                                                     ignore_eos=True))
    num_preemptions, retire_bytes = run_with_preemptions(engine, request, args.preempt_every)
    result = figures(engine, num_preemptions=num_preemptions,
                     num_prefilled_tokens=args.prompt_len, retire_bytes=retire_bytes)
    engine.close()
    return result


def multi_turn(config: str, args: argparse.Namespace, num_threads: int) -> dict:
    engine = make_engine(config, num_threads)
    conversation_id = "chat" if config == "fastswitch" else ""
    prompt = synthetic_tokens(1, args.prompt_len)
    num_preemptions = 0
    num_prefilled = 0
    retire_bytes = 0
    for turn in range(args.num_turns):
        request = engine.add_request(f"turn-{turn}", prompt, conversation_id=conversation_id,
                                     stop=StopConditions(max_tokens=args.num_new_tokens,
                                                         ignore_eos=True))
        num_prefilled += len(prompt) - request.num_reused_tokens
        num_turn_preemptions, num_turn_retire_bytes = run_with_preemptions(
            engine, request, args.preempt_every)
        num_preemptions += num_turn_preemptions
        retire_bytes += num_turn_retire_bytes
        engine.step()  # let the engine forget the finished turn (and retire its KV)
        user_tokens = synthetic_tokens(turn + 2, args.num_user_tokens)
        prompt = prompt + request.output_token_ids + user_tokens
    result = figures(engine, num_preemptions=num_preemptions, num_prefilled_tokens=num_prefilled,
                     retire_bytes=retire_bytes)
    result["num_turns"] = args.num_turns
    result["last_prompt_len"] = len(prompt) - args.num_user_tokens
    engine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter requests, fewer turns")
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads")
    parser.add_argument("--prompt-len", type=int, default=None, help="default 256 (quick 64)")
    parser.add_argument("--num-new-tokens", type=int, default=None,
                        help="answer tokens per request/turn; default 256 (quick 64)")
    parser.add_argument("--preempt-every", type=int, default=32, help="answer tokens")
    parser.add_argument("--num-turns", type=int, default=None, help="default 6 (quick 3)")
    parser.add_argument("--num-user-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "reuse_cpu.json")
    args = parser.parse_args()
    args.prompt_len = args.prompt_len or (64 if args.quick else 256)
    args.num_new_tokens = args.num_new_tokens or (64 if args.quick else 256)
    args.num_turns = args.num_turns or (3 if args.quick else 6)
    num_threads = set_threads(args.threads)
    record = run_record(num_threads=num_threads, is_quick=args.quick)
    results = {scenario: {config: run(config, args, num_threads) for config in CONFIGS}
               for scenario, run in (("growing", growing), ("multi_turn", multi_turn))}
    finish_record(record)
    rows = []
    for scenario, by_config in results.items():
        base = by_config["baseline"]
        for config, result in by_config.items():
            for key in ("swap_out_bytes", "preemption_swap_out_bytes"):
                result[f"{key}_vs_baseline"] = result[key] / base[key] - 1
            rows.append([scenario, config, result["num_preemptions"], result["swap_out_blocks"],
                         f"{result['swap_out_bytes_vs_baseline']:+.1%}",
                         result["preemption_swap_out_blocks"],
                         f"{result['preemption_swap_out_bytes_vs_baseline']:+.1%}",
                         result["swap_in_blocks"], result["swap_out_copies"],
                         result["num_prefilled_prompt_tokens"]])
    print_table(["scenario", "config", "preemptions", "out blocks", "vs baseline",
                 "of which preemptions", "vs baseline", "in blocks", "out copies",
                 "prefilled tokens"], rows)
    write_json(args.out, {
        "benchmark": "reuse",
        "run": record,
        "settings": {"model": "tiny", "dtype": "float32", "block_size": 16,
                     "num_compute_threads": num_threads, "prompt_len": args.prompt_len,
                     "num_new_tokens": args.num_new_tokens, "preempt_every": args.preempt_every,
                     "num_turns": args.num_turns, "num_user_tokens": args.num_user_tokens},
        "results": results,
    })


if __name__ == "__main__":
    main()
