"""`fastswitch frontend`: the client-facing API service. Its flags are FrontendConfig's
settings (fastswitch_frontend/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from fastswitch import logs, settings
from fastswitch_frontend.config import FrontendConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, FrontendConfig)


def run(args: argparse.Namespace) -> int:
    try:
        config = settings.from_args(FrontendConfig, args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch frontend: {exc}", file=sys.stderr)
        return 2
    from fastswitch_frontend.server import serve  # here: `--help` needs none of it

    logs.configure(config.log_level, service="frontend")
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # its port is taken, or its TLS files cannot be read
        logging.getLogger("fastswitch.frontend").error(str(exc))
        return 1
    except ValueError as exc:  # the tenants file, or the checkpoint's chat template
        logging.getLogger("fastswitch.frontend").error(str(exc))
        return 2
    return 0
