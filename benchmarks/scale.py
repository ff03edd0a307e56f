"""Scale: the real scheduler and frontends driven by many simulated workers. Reports delivered
tokens/s, TTFT and inter-token latency (ITL) p50/p99, and CPU per delivered token of the
scheduler and of each frontend, over a steady window after a warm-up. Prints a table, writes
JSON.

    python benchmarks/scale.py --workers 16 --frontends 1 --streams 512 --out benchmarks/results
    python benchmarks/scale.py --workers 64 --frontends 2 --streams 2048 --step-ms 40

Every service is its own process, started as containers start them (`fastswitch worker
--simulate | scheduler | frontend` with its config's flags, one cluster token); no kvstore
(routing by load only). A simulated worker speaks the real Worker protocol and runs the
engine's own batching and switch bookkeeping, but a step only sleeps `--step-ms` and gives each
of its (at most `--max-running`) running requests one token, so the workers offer
workers x max_running x 1000 / step_ms tokens/s, and cost little CPU (about 10 us per running
request per step, plus their gRPC messages).

Clients: `--streams` closed-loop `fastswitch.v1.Scheduler/Generate` streams (token-id prompts,
ignore_eos) spread round-robin over the frontends, in `--client-processes` processes of their
own (asyncio, several channels each), so the harness shares no interpreter with what it
measures. It still shares the machine's cores: the table shows what the clients cost too.

CPU: utime + stime of each process from /proc/<pid>/stat (every thread), read at the start and
end of the window. Tokens, TTFT and ITL count what arrived inside the window: a TTFT is counted
when the first token arrives there, an ITL sample is the gap between two responses of one
stream divided among the response's tokens.
"""

from __future__ import annotations

import argparse
import array
import collections
import contextlib
import multiprocessing
import os
import queue
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from _scale_clients import client_main

from fastswitch import transport
from fastswitch.v1 import scheduler_pb2, scheduler_pb2_grpc
from fastswitch_frontend.config import FrontendConfig
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.process_stack import free_port, service_command, wait_serving
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig
from fastswitch_worker.service.config import WorkerConfig

# Every client process imports this module again (multiprocessing's spawn runs the main module):
# nothing here may import torch or numpy at the top. benchmarks/_common.py does, so the
# functions that need it import it.

STOP_TIMEOUT_S = 20.0
CONNECT_TIMEOUT_S = 120.0
WORKERS_READY_TIMEOUT_S = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stack:
    frontend_addresses: tuple[str, ...]
    pids: dict[str, int]  # "scheduler", "frontend-0", "worker-0"... -> process id
    log_dir: Path


@contextlib.contextmanager
def scale_stack(args: argparse.Namespace, log_dir: Path) -> Iterator[Stack]:
    """Start the simulated workers, the scheduler and the frontends (each SERVING on
    grpc.health before the next kind starts); on exit SIGTERM them all, frontends first, and
    kill what has not stopped within STOP_TIMEOUT_S."""
    log_dir.mkdir(parents=True, exist_ok=True)
    security = transport.TransportSecurity(cluster_token=secrets.token_urlsafe(32))
    processes: list[tuple[str, subprocess.Popen]] = []

    def start(name: str, service: str, config) -> None:
        command, environment = service_command(service, config)
        log = open(log_dir / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
        processes.append((name, subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                 env=environment)))

    def wait_all(names_addresses: list[tuple[str, str]]) -> None:
        for name, address in names_addresses:
            wait_serving(name, address, processes, log_dir, security)

    try:
        engine = EngineConfig(max_num_seqs=args.max_running, max_num_batched_tokens=max(
            512, args.max_running * args.prompt_tokens))
        simulation = SimulatedEngineConfig(simulated_step_ms=args.step_ms)
        workers = [(f"worker-{i}", f"127.0.0.1:{free_port()}") for i in range(args.workers)]
        for name, address in workers:
            start(name, "worker", WorkerConfig(
                engine=engine, simulate=True, simulation=simulation, listen=address,
                worker_id=name, drain_timeout_s=1.0, log_level=args.log_level,
                security=security))
        wait_all(workers)
        scheduler_address = f"127.0.0.1:{free_port()}"
        defaults = SchedulerConfig()  # the queue caps must not refuse the benchmark's streams
        start("scheduler", "scheduler", SchedulerConfig(
            listen=scheduler_address, workers=tuple(address for _, address in workers),
            tick_ms=args.tick_ms, policy=args.policy, max_running_per_worker=args.max_running,
            max_queued_requests=max(args.streams, defaults.max_queued_requests),
            max_queued_per_tenant=max(args.streams, defaults.max_queued_per_tenant),
            allow_anonymous_admin=True, log_level=args.log_level, security=security))
        wait_all([("scheduler", scheduler_address)])
        frontends = [(f"frontend-{i}", f"127.0.0.1:{free_port()}") for i in range(args.frontends)]
        for name, address in frontends:
            start(name, "frontend", FrontendConfig(
                listen=address, scheduler_addr=scheduler_address, frontend_name=name,
                allow_anonymous_admin=True, log_level=args.log_level, security=security))
        wait_all(frontends)
        yield Stack(tuple(address for _, address in frontends),
                    {name: process.pid for name, process in processes}, log_dir)
    finally:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _, process in reversed(processes):
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_workers(address: str, num_workers: int) -> int:
    """Poll the cluster's stats through a frontend until every worker is ready (or
    WORKERS_READY_TIMEOUT_S passed); returns how many were. Workers' figures are an admin's:
    the stack lets anonymous callers be admins."""
    deadline = time.monotonic() + WORKERS_READY_TIMEOUT_S
    num_ready = 0
    with grpc.insecure_channel(address) as channel:
        stub = scheduler_pb2_grpc.SchedulerStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                stats = stub.GetClusterStats(scheduler_pb2.GetClusterStatsRequest(), timeout=5)
                num_ready = sum(w.is_ready for w in stats.workers)
                if num_ready >= num_workers:
                    break
            time.sleep(0.2)
    return num_ready


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, every thread of it (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


# ---- the run -----------------------------------------------------------------------------
def measure(args: argparse.Namespace, stack: Stack) -> dict[str, object]:
    """Start the clients, let them warm up, measure one window; returns the raw figures."""
    context = multiprocessing.get_context("spawn")
    ready, results, go = context.Queue(), context.Queue(), context.Event()
    window = context.Array("d", 2)
    settings = {"prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
                "streams_per_channel": args.streams_per_channel}
    num_clients = args.client_processes or args.frontends
    addresses = list(stack.frontend_addresses)
    clients = []
    for client in range(num_clients):
        indices = list(range(client, args.streams, num_clients))
        # Each client spreads its streams over every frontend (round-robin over channels).
        clients.append(context.Process(target=client_main, args=(
            addresses, indices, settings, ready, go, window, results), daemon=True))
    for process in clients:
        process.start()
    try:
        for _ in clients:  # a client that failed printed its traceback; this says so
            _get(ready, CONNECT_TIMEOUT_S, "a client process did not connect")
        now_s = time.monotonic()
        window[0], window[1] = now_s + args.warmup_s, now_s + args.warmup_s + args.duration_s
        go.set()
        measured = dict(stack.pids)
        measured.update({f"client-{i}": p.pid for i, p in enumerate(clients)})
        time.sleep(max(0.0, window[0] - time.monotonic()))
        cpu_start = {name: cpu_seconds(pid) for name, pid in measured.items()}
        time.sleep(max(0.0, window[1] - time.monotonic()))
        cpu = {name: cpu_seconds(pid) - cpu_start[name] for name, pid in measured.items()}
        outcomes = [_get(results, STOP_TIMEOUT_S + 30, "a client process reported nothing")
                    for _ in clients]
    finally:
        for process in clients:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()
    ttft, itl = array.array("d"), array.array("d")
    codes: collections.Counter = collections.Counter()
    for outcome in outcomes:
        ttft.frombytes(outcome["ttft_s"])
        itl.frombytes(outcome["itl_s"])
        codes.update(outcome["codes"])
    return {"num_tokens": sum(o["num_tokens"] for o in outcomes),
            "num_finished": sum(o["num_finished"] for o in outcomes),
            "codes": dict(codes), "ttft_ms": [s * 1e3 for s in ttft],
            "itl_ms": [s * 1e3 for s in itl], "cpu_s": cpu}


def _get(source, timeout_s: float, problem: str):
    try:
        return source.get(timeout=timeout_s)
    except queue.Empty:
        raise RuntimeError(f"{problem} within {timeout_s:.0f} s") from None


def report(args: argparse.Namespace, raw: dict[str, object], num_ready: int) -> dict[str, object]:
    from _common import summarize_ms  # numpy: see the note at the imports

    num_tokens = raw["num_tokens"]
    cpu: dict[str, float] = raw["cpu_s"]

    def cpu_of(names: list[str]) -> dict[str, float]:
        seconds = sum(cpu[name] for name in names)
        return {"cpu_s": seconds, "cores": seconds / args.duration_s,
                "us_per_token": seconds / num_tokens * 1e6 if num_tokens else None}

    groups = {"scheduler": ["scheduler"],
              **{f"frontend-{i}": [f"frontend-{i}"] for i in range(args.frontends)},
              "frontends (all)": [n for n in cpu if n.startswith("frontend-")],
              "workers (all)": [n for n in cpu if n.startswith("worker-")],
              "clients (all)": [n for n in cpu if n.startswith("client-")]}
    return {
        "settings": {k: getattr(args, k) for k in (
            "workers", "frontends", "streams", "max_tokens", "prompt_tokens", "duration_s",
            "warmup_s", "step_ms", "max_running", "tick_ms", "policy", "client_processes",
            "streams_per_channel")},
        "num_workers_ready": num_ready,
        "offered_tokens_per_s": args.workers * args.max_running * 1e3 / args.step_ms,
        "delivered_tokens_per_s": num_tokens / args.duration_s,
        "num_tokens": num_tokens,
        "num_finished_requests": raw["num_finished"],
        "codes": raw["codes"],
        "ttft_ms": summarize_ms(raw["ttft_ms"]) if raw["ttft_ms"] else None,
        "itl_ms": summarize_ms(raw["itl_ms"]) if raw["itl_ms"] else None,
        "cpu": {name: cpu_of(names) for name, names in groups.items()},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--frontends", type=int, default=1)
    parser.add_argument("--streams", type=int, default=512, help="concurrent client streams")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--duration-s", type=float, default=20.0, help="the measured window")
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--step-ms", type=float, default=20.0, help="a simulated engine step")
    parser.add_argument("--max-running", type=int, default=32, help="requests per worker")
    parser.add_argument("--tick-ms", type=float, default=SchedulerConfig().tick_ms)
    parser.add_argument("--policy", default="vtc")
    parser.add_argument("--client-processes", type=int, default=0,
                        help="client processes (default: one per frontend)")
    parser.add_argument("--streams-per-channel", type=int, default=128)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep the services' logs here (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=None, help="directory for the JSON")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, object]:
    """The whole benchmark: stack up, clients, one window, stack down; returns the report
    (with the run record)."""
    from _common import command_line, finish_record  # torch: see the note at the imports

    from fastswitch_bench.machine import machine_description

    record = {"command": command_line(), "machine": machine_description(),
              "load_average_1_5_15_min": list(os.getloadavg()), "started_unix_s": time.time()}
    with tempfile.TemporaryDirectory(prefix="fastswitch-scale-") as tmp, \
            scale_stack(args, args.log_dir or Path(tmp)) as stack:
        num_ready = wait_for_workers(stack.frontend_addresses[0], args.workers)
        if num_ready < args.workers:
            print(f"warning: the cluster reports {num_ready} of {args.workers} workers ready; "
                  "measuring anyway", file=sys.stderr)
        raw = measure(args, stack)
    finish_record(record)
    return {"record": record, **report(args, raw, num_ready)}


def main() -> None:
    from _common import print_table, write_json

    args = parse_args()
    result = run(args)
    print(f"{args.workers} simulated workers x {args.max_running} running, step "
          f"{args.step_ms:g} ms (offer {result['offered_tokens_per_s']:.0f} tokens/s); "
          f"{args.frontends} frontend(s), {args.streams} streams, {args.max_tokens} tokens each")
    ttft, itl = result["ttft_ms"] or {}, result["itl_ms"] or {}
    print_table(["tokens/s", "requests", "ttft p50 ms", "ttft p99 ms", "itl p50 ms", "itl p99 ms"],
                [[result["delivered_tokens_per_s"], result["num_finished_requests"],
                  ttft.get("p50", float("nan")), ttft.get("p99", float("nan")),
                  itl.get("p50", float("nan")), itl.get("p99", float("nan"))]])
    print()
    print_table(["process", "cpu s", "cores", "us/token"],
                [[name, c["cpu_s"], c["cores"], c["us_per_token"]]
                 for name, c in result["cpu"].items()])
    if set(result["codes"]) - {"OK"}:
        print("stream endings:", result["codes"])
    if args.out is not None:
        name = f"scale_{args.workers}w_{args.frontends}f_{args.streams}s.json"
        write_json(args.out / name, result)


if __name__ == "__main__":
    sys.exit(main())
