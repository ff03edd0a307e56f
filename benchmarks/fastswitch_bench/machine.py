"""What the benchmark ran on, for the report: results mean little without the machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description(*, proc_dir: Path = Path("/proc")) -> dict[str, object]:
    """CPU model, cores, memory, Python, platform, torch version and threads, and the CUDA
    device if there is one (reads files under `proc_dir`; mutates nothing). Figures the
    system does not expose are None."""
    import torch  # imported here: the pure parts of the package should not pay for torch

    return {
        "cpu_model": _cpu_model(proc_dir / "cpuinfo"),
        "num_cpu_cores": os.cpu_count(),
        "num_usable_cpu_cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else None,
        "memory_bytes": _memory_bytes(proc_dir / "meminfo"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "torch_version": torch.__version__,
        # Copy bandwidth on CPU depends on this (see the design notes on oversubscription).
        "torch_num_threads": torch.get_num_threads(),
        "cuda_device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }


def _cpu_model(cpuinfo_path: Path) -> str | None:
    if not cpuinfo_path.is_file():
        return None
    for line in cpuinfo_path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        # x86 says "model name"; some ARM kernels only say "Hardware" or "Model".
        if key.strip() in ("model name", "Hardware", "Model") and value.strip():
            return value.strip()
    return None


def _memory_bytes(meminfo_path: Path) -> int | None:
    if not meminfo_path.is_file():
        return None
    for line in meminfo_path.read_text(errors="replace").splitlines():
        if line.startswith("MemTotal:"):
            amount, _, unit = line.removeprefix("MemTotal:").strip().partition(" ")
            return int(amount) * (1024 if unit.strip() == "kB" else 1)
    return None
