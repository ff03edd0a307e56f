"""`fastswitch scheduler`: the scheduler service (the control plane). Its flags are SchedulerConfig's
settings (fastswitch_scheduler/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from fastswitch import logs, settings
from fastswitch_scheduler.config import SchedulerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, SchedulerConfig)


def run(args: argparse.Namespace) -> int:
    try:
        config = settings.from_args(SchedulerConfig, args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch scheduler: {exc}", file=sys.stderr)
        return 2
    from fastswitch_scheduler.server import serve  # here: `--help` needs none of it

    logs.configure(config.log_level, service="scheduler")
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # its port is taken, or its TLS files cannot be read
        logging.getLogger("fastswitch.scheduler").error(str(exc))
        return 1
    return 0
