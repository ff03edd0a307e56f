"""WorkerConfig: the worker service's settings, validated; filled from CLI/env in main only."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass, field

from fastswitch import transport
from fastswitch_worker.engine.config import EngineConfig, SwitchMode

DEFAULT_PORT = 50061
# Longer than any one engine step takes (a long prefill on CPU included), so liveness fails only
# for a loop that is stuck or dead.
DEFAULT_LIVENESS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WorkerConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"
    worker_id: str = field(default_factory=socket.gethostname)
    # Address other components use to reach this worker (published to the kvstore).
    advertise_address: str = ""
    kvstore_addr: str = ""  # empty: multi-turn KV is not published anywhere
    drain_timeout_s: float = 30.0
    # Liveness (grpc.health.v1 service LIVENESS_SERVICE) fails when the engine thread has not
    # beaten its heartbeat for this long.
    liveness_timeout_s: float = DEFAULT_LIVENESS_TIMEOUT_S
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.worker_id:
            raise ValueError("worker_id must not be empty")
        if self.drain_timeout_s < 0:
            raise ValueError("drain_timeout_s must be >= 0")
        if not self.liveness_timeout_s > 0:
            raise ValueError("liveness_timeout_s must be > 0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--listen", default=env("FASTSWITCH_WORKER_LISTEN", f"0.0.0.0:{DEFAULT_PORT}"))
    parser.add_argument("--worker-id", default=env("FASTSWITCH_WORKER_ID", socket.gethostname()))
    parser.add_argument("--advertise-address", default=env("FASTSWITCH_WORKER_ADVERTISE", ""))
    parser.add_argument("--kvstore-addr", default=env("FASTSWITCH_KVSTORE_ADDR", ""))
    parser.add_argument("--model", default=env("FASTSWITCH_MODEL", "tiny"),
                        help="checkpoint directory or preset name (dummy weights)")
    parser.add_argument("--load-format", default=env("FASTSWITCH_LOAD_FORMAT", "auto"),
                        choices=["auto", "safetensors", "dummy"])
    parser.add_argument("--dtype", default=env("FASTSWITCH_DTYPE", "auto"))
    parser.add_argument("--device", default=env("FASTSWITCH_DEVICE", "auto"))
    parser.add_argument("--mode", default=env("FASTSWITCH_MODE", "fastswitch"),
                        choices=[m.value for m in SwitchMode])
    parser.add_argument("--block-size", type=int, default=int(env("FASTSWITCH_BLOCK_SIZE", "16")))
    parser.add_argument("--kv-memory-fraction", type=float,
                        default=float(env("FASTSWITCH_KV_MEMORY_FRACTION", "0.85")))
    parser.add_argument("--kv-cache-bytes", type=int, default=_optional_int(env("FASTSWITCH_KV_CACHE_BYTES")))
    parser.add_argument("--host-swap-bytes", type=int,
                        default=int(env("FASTSWITCH_HOST_SWAP_BYTES", str(1 << 30))))
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--max-num-seqs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compute-threads", type=int, default=None,
                        help="torch intra-op threads (default: leave a core per copy thread)")
    parser.add_argument("--drain-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--liveness-timeout-s", type=float,
        default=float(env("FASTSWITCH_LIVENESS_TIMEOUT_S", str(DEFAULT_LIVENESS_TIMEOUT_S))),
        help="report the grpc.health.v1 service 'fastswitch.liveness' NOT_SERVING once the "
             "engine loop has made no progress for this many seconds (stuck or dead); keep it "
             "above the longest step, e.g. a long prefill on CPU (env "
             f"FASTSWITCH_LIVENESS_TIMEOUT_S, default {DEFAULT_LIVENESS_TIMEOUT_S:g})")
    parser.add_argument("--log-level", default=env("FASTSWITCH_LOG_LEVEL", "info"))
    transport.add_arguments(parser)


def _optional_int(value: str | None) -> int | None:
    return int(value) if value else None


def from_args(args: argparse.Namespace) -> WorkerConfig:
    engine = EngineConfig(
        model=args.model, load_format=args.load_format, dtype=args.dtype, device=args.device,
        seed=args.seed, mode=SwitchMode(args.mode), block_size=args.block_size,
        gpu_memory_fraction=args.kv_memory_fraction, kv_cache_bytes=args.kv_cache_bytes,
        host_kv_bytes=args.host_swap_bytes, max_num_batched_tokens=args.max_num_batched_tokens,
        max_num_seqs=args.max_num_seqs, num_compute_threads=args.compute_threads)
    return WorkerConfig(engine=engine, listen=args.listen, worker_id=args.worker_id,
                        advertise_address=args.advertise_address, kvstore_addr=args.kvstore_addr,
                        drain_timeout_s=args.drain_timeout_s,
                        liveness_timeout_s=args.liveness_timeout_s,
                        security=transport.from_args(args),
                        log_level=args.log_level)
