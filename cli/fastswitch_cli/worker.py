"""`fastswitch worker`: one worker service (the GPU engine behind fastswitch.v1.Worker)."""

from __future__ import annotations

import argparse
import asyncio

from fastswitch import logs
from fastswitch_worker.service import config as worker_config
from fastswitch_worker.service.server import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    worker_config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    config = worker_config.from_args(args)
    logs.configure(config.log_level, service="worker")
    asyncio.run(serve(config))
    return 0
