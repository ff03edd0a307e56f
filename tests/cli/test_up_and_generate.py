"""`fastswitch up` and `fastswitch generate` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request

import grpc
import openai
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


def test_up_serves_generate_and_the_openai_api_and_matches_the_local_engine() -> None:
    port, http_port = free_port(), free_port()
    up = subprocess.Popen([*CLI, "up", "--port", str(port), "--http-port", str(http_port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = up.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + up.stderr.read()
        http_line = up.stdout.readline()
        assert f"OpenAI-compatible API: http://127.0.0.1:{http_port}/v1" in http_line, http_line
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        remote = generate("--addr", f"127.0.0.1:{port}")
        local = generate("--local", "--model", "tiny")
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{http_port}/v1", api_key="any",
                            max_retries=0)
        completion = api.completions.create(model="tiny", prompt="héllo", max_tokens=6,
                                            temperature=0, extra_body={"ignore_eos": True})
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    remote_ids = [t for chunk in remote for t in chunk["token_ids"]]
    assert len(remote_ids) == 6
    assert remote_ids == [t for chunk in local for t in chunk["token_ids"]]
    assert remote[-1]["finish_reason"] == "length"
    assert completion.choices[0].text == "".join(chunk["text"] for chunk in remote)


def test_generate_against_nothing_fails_clearly() -> None:
    result = subprocess.run([*CLI, "generate", "--prompt", "x", "--addr", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr


def test_up_with_tls_serves_generate_over_tls_and_its_port_cannot_be_taken_twice(tls_files) -> None:
    """Every link of the stack (client -> frontend -> scheduler and workers -> kvstore) speaks TLS; a
    plaintext client is refused; a second stack on the same port fails instead of sharing it."""
    port = free_port()
    tls = ["--tls-cert", str(tls_files.server_cert), "--tls-key", str(tls_files.server_key),
           "--tls-ca", str(tls_files.ca)]
    http_port = free_port()
    up = subprocess.Popen([*CLI, "up", "--port", str(port), "--http-port", str(http_port), *tls],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        line = up.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line + up.stderr.read()
        assert f"https://127.0.0.1:{http_port}/v1" in up.stdout.readline()  # TLS there too
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        with urllib.request.urlopen(f"https://127.0.0.1:{http_port}/health", context=context,
                                    timeout=10) as response:
            assert response.status == 200
        remote = generate("--addr", f"127.0.0.1:{port}", "--ca", str(tls_files.ca))
        assert sum(len(chunk["token_ids"]) for chunk in remote) == 6
        plaintext = subprocess.run([*CLI, "generate", "--prompt", "x", "--addr", f"127.0.0.1:{port}"],
                                   capture_output=True, text=True, env=ENV, timeout=60)
        assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr
        second = subprocess.run([*CLI, "up", "--port", str(port), "--http-port", str(free_port())],
                                capture_output=True, text=True, env=ENV, timeout=300)
        assert second.returncode == 1 and "frontend-0 exited" in second.stdout, second.stdout
        assert "cannot bind" in second.stdout, second.stdout
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0


def test_up_with_a_model_that_cannot_load_fails_at_once_with_the_workers_message(tmp_path) -> None:
    missing = tmp_path / "no-such-checkpoint"
    result = subprocess.run([*CLI, "up", "--port", str(free_port()), "--model", str(missing)],
                            capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 1
    assert "worker-0 exited with 1: engine failed to load" in result.stdout, result.stdout
    assert "no-such-checkpoint" in result.stdout


def test_generate_refuses_an_address_without_a_port() -> None:
    result = subprocess.run([*CLI, "generate", "--prompt", "x", "--addr", "127.0.0.1"],
                            capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_generate_json_into_a_closed_pipe_ends_quietly() -> None:
    pipeline = subprocess.run(
        f"{sys.executable} -m fastswitch_cli.main generate --local --model tiny --json "
        "--prompt hi --max-tokens 64 --ignore-eos | head -1",
        shell=True, capture_output=True, text=True, env=ENV, timeout=120)
    assert pipeline.returncode == 0
    assert len(pipeline.stdout.splitlines()) == 1 and "token_ids" in pipeline.stdout
    assert "BrokenPipeError" not in pipeline.stderr and "Traceback" not in pipeline.stderr
