"""`fastswitch up`: the whole stack on 127.0.0.1 (kvstore with embedded Redis, worker(s),
scheduler), a tiny dummy model on CPU by default. Runs until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from fastswitch import logs
from fastswitch_cli.local_stack import local_stack
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
    parser.add_argument("--tenants-file", default="", help="bearer tokens -> tenants (JSON)")
    parser.add_argument("--log-level", default="warning")


def run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, service="up")
    engine = EngineConfig(model=args.model, mode=SwitchMode(args.mode), block_size=args.block_size,
                          kv_cache_bytes=args.kv_cache_bytes, host_kv_bytes=args.host_swap_bytes)
    scheduler = SchedulerConfig(listen=f"127.0.0.1:{args.port}", model=args.model,
                                policy=args.policy, tenants_file=args.tenants_file)
    asyncio.run(_serve(engine, scheduler, args.workers))
    return 0


async def _serve(engine: EngineConfig, scheduler: SchedulerConfig, num_workers: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with local_stack(engine=engine, scheduler=scheduler, num_workers=num_workers,
                           redis_url=os.environ.get("REDIS_URL")) as stack:
        print(f"scheduler listening on {stack.address}", flush=True)
        print(f"try: fastswitch generate --addr {stack.address} --prompt 'Hello' --max-tokens 16",
              flush=True)
        await stop.wait()
