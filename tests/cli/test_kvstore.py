"""`fastswitch kvstore`: flags, env fallback, and a real process that serves and stops on SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch_cli import kvstore as kvstore_cli


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    kvstore_cli.add_arguments(parser)
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_lists_the_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastswitch_cli.main", "kvstore", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    for flag in ("--listen", "--redis-url", "--log-level"):
        assert flag in result.stdout


def test_redis_url_comes_from_the_flag_then_the_env_then_embedded() -> None:
    env = {"REDIS_URL": "redis://from-env:6379/0"}
    flagged = kvstore_cli.config_from_args(parse("--redis-url", "redis://flag:1/0"), env)
    assert flagged.redis_url == "redis://flag:1/0"
    assert kvstore_cli.config_from_args(parse(), env).redis_url == "redis://from-env:6379/0"
    assert kvstore_cli.config_from_args(parse(), {}).redis_url is None


def test_invalid_flag_value_fails_without_starting(capsys) -> None:
    assert kvstore_cli.run(parse("--listen", "nonsense")) == 2
    assert "listen_address" in capsys.readouterr().err


def health_status(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="fastswitch.v1.KVStore"), timeout=1.0
            )
        except grpc.RpcError:
            return None
    return response.status


def test_process_serves_until_sigterm(redis_url: str) -> None:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastswitch_cli.main",
            "kvstore",
            "--redis-url",
            redis_url,
            "--listen",
            address,
            "--log-level",
            "info",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while health_status(address) != health_pb2.HealthCheckResponse.SERVING:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "kvstore never became SERVING"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log_records = [
        json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")
    ]
    messages = [record["msg"] for record in log_records]
    assert "kvstore serving" in messages
    assert "kvstore stopped" in messages
