"""`fastswitch worker`: one worker service (the GPU engine behind fastswitch.v1.Worker). Its
flags are WorkerConfig's settings, the engine's included (fastswitch_worker/service/config.py,
fastswitch_worker/engine/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastswitch import logs, settings
from fastswitch_worker.service.config import WorkerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, WorkerConfig)


def run(args: argparse.Namespace) -> int:
    try:
        config = settings.from_args(WorkerConfig, args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch worker: {exc}", file=sys.stderr)
        return 2
    from fastswitch_worker.service.server import serve  # here: torch, which `--help` needs not

    logs.configure(config.log_level, service="worker")
    # Non-zero (1) when the engine became unrecoverable: the orchestrator restarts the worker.
    return asyncio.run(serve(config))
