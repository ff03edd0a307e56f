"""`fastswitch worker`: one worker service (the GPU engine behind fastswitch.v1.Worker)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastswitch import logs
from fastswitch_worker.service import config as worker_config
from fastswitch_worker.service.server import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    worker_config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = worker_config.from_args(args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch worker: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, service="worker")
    # Non-zero (1) when the engine became unrecoverable: the orchestrator restarts the worker.
    return asyncio.run(serve(config))
