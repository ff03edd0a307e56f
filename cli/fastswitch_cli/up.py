"""`fastswitch up`: the whole stack as local processes on 127.0.0.1 — kvstore (embedded Redis
unless --redis-url), N workers, the scheduler (control plane) and the frontends (the client
API) — a tiny dummy model on CPU by default. Prints the client API's address; Ctrl-C stops
everything.

The service settings it takes are the services' own (same flags, variables and defaults),
passed on to every process that uses them."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from fastswitch import settings
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import StackError, process_stack
from fastswitch_worker.engine.config import EngineConfig

ENGINE_SETTINGS = ("model", "mode", "block_size", "kv_cache_bytes", "host_kv_bytes")
SCHEDULER_SETTINGS = ("policy", "tick_ms", "vtc_preempt_threshold", "tenants_file", "allow_anonymous_admin",
                      "max_queued_requests", "max_queued_per_tenant", "unroutable_timeout_s",
                      "log_level")  # --model is the engine's: the frontends tokenize with it
# TLS for every service of the stack; the cluster token is generated unless given.
SECURITY_SETTINGS = ("tls_cert", "tls_key", "tls_client_ca", "tls_ca", "cluster_token")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=50051, help=(
        "port of the client API (fastswitch.v1.Scheduler, served by the first frontend; "
        "default 50051)"))
    parser.add_argument("--workers", dest="num_workers", type=int, default=1, metavar="N",
                        help="number of workers (default 1)")
    parser.add_argument("--frontends", dest="num_frontends", type=int, default=1, metavar="N",
                        help="number of frontends, each serving the client API (default 1)")
    parser.add_argument("--log-dir", default=None,
                        help="one log file per service (default: a new temporary directory)")
    settings.add_arguments(parser, EngineConfig, only=ENGINE_SETTINGS)
    settings.add_arguments(parser, SchedulerConfig, only=SCHEDULER_SETTINGS + SECURITY_SETTINGS)
    settings.add_arguments(parser, KVStoreConfig, only=("redis_url",))


def run(args: argparse.Namespace) -> int:
    try:
        engine = settings.from_args(EngineConfig, args)
        scheduler = settings.from_args(SchedulerConfig, args)
        redis_url = settings.from_args(KVStoreConfig, args).redis_url
    except ValueError as exc:
        print(f"fastswitch up: {exc}", flush=True)
        return 2
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="fastswitch-up-"))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with process_stack(engine=engine, scheduler=scheduler, log_dir=log_dir,
                           num_workers=args.num_workers, port=args.port,
                           num_frontends=args.num_frontends,
                           redis_url=redis_url, log_level=scheduler.log_level,
                           security=scheduler.security) as stack:
            print(f"scheduler API listening on {stack.address} (frontends: "
                  f"{', '.join(stack.frontend_addresses)}; control plane: "
                  f"{stack.scheduler_address})", flush=True)
            if not Path(engine.model).is_dir():
                print(f"model {engine.model!r} is a preset with random weights: answers are "
                      "noise (deterministic); pass --model DIR for a real checkpoint", flush=True)
            print(f"logs in {log_dir}; try: fastswitch generate --addr {stack.address} "
                  "--prompt 'Hello' --max-tokens 16", flush=True)
            stop.wait()
    except (StackError, ValueError) as exc:
        print(f"fastswitch up: {exc}", flush=True)
        return 1
    return 0
