"""`fastswitch up`: the whole stack as local processes on 127.0.0.1 — kvstore (embedded Redis
unless --redis-url), N workers, the scheduler (control plane) and the frontends (the client
API) — a tiny dummy model on CPU by default. Prints the client API's address and the
OpenAI-compatible HTTP API's base URL (`--http-port`, default 8000; with several frontends each
gets its own port: P, P+1, ...); Ctrl-C stops everything.

The service settings it takes are the services' own (same flags, variables and defaults),
passed on to every process that uses them."""

from __future__ import annotations

import argparse
import signal
import tempfile
import threading
from pathlib import Path

from fastswitch import settings
from fastswitch_frontend.config import FrontendConfig
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import StackError, process_stack
from fastswitch_worker.service.config import WorkerConfig

# Every setting of the workers (the engine's, the simulation's and the service's) and of the
# scheduler, except what the stack fills in itself: addresses, names, per-process ports and the
# shared TLS/log settings (taken once, below). --model is the engine's: the frontends tokenize
# with it.
STACK_OWNED = frozenset({"listen", "workers", "kvstore_addr", "worker_id", "advertise_address",
                         "metrics_port", "log_level", "tls_cert", "tls_key", "tls_client_ca",
                         "tls_ca", "cluster_token"})
WORKER_SETTINGS = tuple(d.name for d in settings.declared(WorkerConfig) if d.name not in STACK_OWNED)
SCHEDULER_SETTINGS = (*(d.name for d in settings.declared(SchedulerConfig)
                        if d.name not in STACK_OWNED), "log_level")
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
    settings.add_arguments(parser, WorkerConfig, only=WORKER_SETTINGS)
    settings.add_arguments(parser, SchedulerConfig, only=SCHEDULER_SETTINGS + SECURITY_SETTINGS)
    settings.add_arguments(parser, KVStoreConfig, only=("redis_url",))
    settings.add_arguments(parser, FrontendConfig, only=("http_port",))


def run(args: argparse.Namespace) -> int:
    try:
        worker = settings.from_args(WorkerConfig, args)
        engine = worker.engine
        scheduler = settings.from_args(SchedulerConfig, args)
        redis_url = settings.from_args(KVStoreConfig, args).redis_url
        http_port = settings.from_args(FrontendConfig, args).http_port
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
                           num_frontends=args.num_frontends, http_port=http_port,
                           redis_url=redis_url, log_level=scheduler.log_level,
                           security=scheduler.security, worker=worker) as stack:
            print(f"scheduler API listening on {stack.address} (frontends: "
                  f"{', '.join(stack.frontend_addresses)}; control plane: "
                  f"{stack.scheduler_address})", flush=True)
            if stack.http_urls:
                print(f"OpenAI-compatible API: {', '.join(stack.http_urls)} (model "
                      f"{engine.model!r})", flush=True)
            if not Path(engine.model).is_dir():
                print(f"model {engine.model!r} is a preset with random weights: answers are "
                      "noise (deterministic); pass --model DIR for a real checkpoint", flush=True)
            print("metrics: " + ", ".join(f"{name} {url}" for name, url
                                          in stack.metrics_urls.items()), flush=True)
            print(f"logs in {log_dir}; try: fastswitch generate --addr {stack.address} "
                  "--prompt 'Hello' --max-tokens 16", flush=True)
            stop.wait()
    except (StackError, ValueError) as exc:
        print(f"fastswitch up: {exc}", flush=True)
        return 1
    return 0
