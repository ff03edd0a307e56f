"""`fastswitch scheduler`: the client-facing scheduler service."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastswitch import logs
from fastswitch_scheduler import config as scheduler_config
from fastswitch_scheduler.server import serve


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scheduler_config.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        config = scheduler_config.from_args(args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch scheduler: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, service="scheduler")
    asyncio.run(serve(config))
    return 0
