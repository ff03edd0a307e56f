"""Shared plumbing of the micro-benchmarks: threads, the run record, tables, JSON output.

Every micro-benchmark records what ran it (machine, torch threads, load average, the exact
command) next to its figures, prints a table and writes one JSON file. Nothing here measures.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from fastswitch_bench.machine import machine_description

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def set_threads(num_threads: int) -> int:
    """Fix torch's intra-op threads for the whole process (copies collapse when
    oversubscribed, see PAPER.md) and return the number actually in effect."""
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def command_line() -> str:
    """The command that ran this benchmark, relative to the current directory (no local
    absolute paths end up in committed results)."""
    script = sys.argv[0]
    if os.path.isabs(script):
        script = os.path.relpath(script)
    return shlex.join(["python", script, *sys.argv[1:]])


def run_record(*, num_threads: int, is_quick: bool) -> dict[str, object]:
    """Machine, threads, load and command of this run; call it right before measuring."""
    return {
        "command": command_line(),
        "is_quick": is_quick,
        "machine": machine_description(),
        "num_torch_threads": num_threads,
        "load_average_1_5_15_min": list(os.getloadavg()),
        "started_unix_s": time.time(),
    }


def finish_record(record: dict[str, object]) -> None:
    """Mutates record: the load average at the end, to spot runs disturbed by other work."""
    record["load_average_end_1_5_15_min"] = list(os.getloadavg())
    record["elapsed_s"] = time.time() - float(record["started_unix_s"])


def write_json(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def synthetic_tokens(seed: int, num_tokens: int) -> list[int]:
    """Deterministic token ids in 1..250 (inside every model's byte range), varied by seed."""
    return [1 + (seed * 131 + i * 17) % 250 for i in range(num_tokens)]


def summarize_ms(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """num_samples, mean, p50, p90, p99, max of a list of milliseconds."""
    array = np.asarray(samples_ms, dtype=float)
    return {
        "num_samples": int(array.size),
        "mean": float(array.mean()),
        "p50": float(np.percentile(array, 50)),
        "p90": float(np.percentile(array, 90)),
        "p99": float(np.percentile(array, 99)),
        "max": float(array.max()),
    }


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Aligned plain-text table; floats with 3 significant decimals."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


@contextmanager
def dummy_model_dir(**fields: object) -> Iterator[str]:
    """A throwaway checkpoint directory holding only config.json (Llama layout), for
    `EngineConfig(model=dir, load_format="dummy")`: any shape without a preset. The byte
    tokenizer needs vocab_size >= 258 (ids 256/257 are BOS/EOS)."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 8192,
        "bos_token_id": 256, "eos_token_id": 257, "tie_word_embeddings": False,
        **fields,
    }
    with tempfile.TemporaryDirectory(prefix="fastswitch-bench-model-") as directory:
        (Path(directory) / "config.json").write_text(json.dumps(config), encoding="utf-8")
        yield directory
