"""`fastswitch up` and `fastswitch generate` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

CLI = [sys.executable, "-m", "fastswitch_cli.main"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def generate(*args: str) -> list[dict]:
    result = subprocess.run([*CLI, "generate", "--json", "--prompt", "héllo", "--max-tokens", "6",
                             "--ignore-eos", *args], capture_output=True, text=True, env=ENV,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_up_serves_generate_and_matches_the_local_engine() -> None:
    port = free_port()
    up = subprocess.Popen([*CLI, "up", "--port", str(port)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = up.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + up.stderr.read()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        remote = generate("--addr", f"127.0.0.1:{port}")
        local = generate("--local", "--model", "tiny")
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    remote_ids = [t for chunk in remote for t in chunk["token_ids"]]
    assert len(remote_ids) == 6
    assert remote_ids == [t for chunk in local for t in chunk["token_ids"]]
    assert remote[-1]["finish_reason"] == "length"


def test_generate_against_nothing_fails_clearly() -> None:
    result = subprocess.run([*CLI, "generate", "--prompt", "x", "--addr", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
