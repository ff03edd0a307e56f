"""`fastswitch kvstore`: run the kvstore service until SIGTERM/SIGINT.

Each flag reads a FASTSWITCH_* environment variable as its default; KVStoreConfig validates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping

from fastswitch import logs, transport
from fastswitch_kvstore.config import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_LISTEN_ADDRESS,
    LOG_LEVELS,
    KVStoreConfig,
)
from fastswitch_kvstore.embedded_redis import EmbeddedRedisError
from fastswitch_kvstore.server import serve

LISTEN_ENV = "FASTSWITCH_KVSTORE_LISTEN"
KEY_PREFIX_ENV = "FASTSWITCH_KVSTORE_KEY_PREFIX"
LOG_LEVEL_ENV = "FASTSWITCH_LOG_LEVEL"
# The first one set wins. REDIS_URL is what the operator sets (from a Secret when the URL holds
# a password: never put one on a command line).
REDIS_URL_ENVS = ("FASTSWITCH_REDIS_URL", "REDIS_URL")


def add_arguments(parser: argparse.ArgumentParser, *,
                  environ: Mapping[str, str] | None = None) -> None:
    env = (os.environ if environ is None else environ).get
    parser.add_argument(
        "--listen",
        default=env(LISTEN_ENV, DEFAULT_LISTEN_ADDRESS),
        metavar="HOST:PORT",
        help=f"gRPC address to serve on (env {LISTEN_ENV}, default {DEFAULT_LISTEN_ADDRESS})",
    )
    parser.add_argument(
        "--redis-url",
        default=next((env(name) for name in REDIS_URL_ENVS if env(name)), None),
        metavar="URL",
        help="Redis holding the index: redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS "
        f"(env {' or '.join(REDIS_URL_ENVS)}; without one a private embedded valkey-server "
        "is started that dies with this process, for local use only)",
    )
    parser.add_argument(
        "--key-prefix",
        default=env(KEY_PREFIX_ENV, DEFAULT_KEY_PREFIX),
        help="prefix of every Redis key, so several clusters can share one Redis "
        f"(env {KEY_PREFIX_ENV}, default {DEFAULT_KEY_PREFIX})",
    )
    parser.add_argument(
        "--log-level",
        default=env(LOG_LEVEL_ENV, "info"),
        choices=LOG_LEVELS,
        type=str.lower,
        help=f"log level (env {LOG_LEVEL_ENV}, default info)",
    )
    transport.add_arguments(parser, environ=environ)


def config_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> KVStoreConfig:
    """Raises ValueError (TransportConfigError is one) for values the service cannot run with."""
    return KVStoreConfig(
        listen_address=args.listen,
        redis_url=args.redis_url or None,
        key_prefix=args.key_prefix,
        log_level=args.log_level,
        security=transport.from_args(args, environ=environ),
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args, dict(os.environ))
    except ValueError as exc:
        print(f"fastswitch kvstore: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, service="kvstore")
    try:
        asyncio.run(serve(config))
    except (OSError, EmbeddedRedisError) as exc:  # port taken, embedded Redis did not start
        print(f"fastswitch kvstore: {exc}", file=sys.stderr)
        return 1
    return 0
