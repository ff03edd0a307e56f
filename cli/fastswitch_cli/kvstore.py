"""`fastswitch kvstore`: run the kvstore service until SIGTERM/SIGINT. Its flags are
KVStoreConfig's settings (fastswitch_kvstore/config.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from fastswitch import logs, settings
from fastswitch_kvstore.config import KVStoreConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(parser, KVStoreConfig)


def run(args: argparse.Namespace) -> int:
    try:
        config = settings.from_args(KVStoreConfig, args)
    except ValueError as exc:  # invalid settings, TLS files or token file
        print(f"fastswitch kvstore: {exc}", file=sys.stderr)
        return 2
    from fastswitch_kvstore.embedded_redis import EmbeddedRedisError
    from fastswitch_kvstore.server import serve

    logs.configure(config.log_level, service="kvstore")
    try:
        asyncio.run(serve(config))
    except (OSError, EmbeddedRedisError) as exc:  # port taken, embedded Redis did not start
        print(f"fastswitch kvstore: {exc}", file=sys.stderr)
        return 1
    return 0
