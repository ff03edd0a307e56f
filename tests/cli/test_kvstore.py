"""`fastswitch kvstore`: flags and their env defaults, and real processes that serve, stop on
SIGTERM, and take their embedded Redis with them when SIGKILLed."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fastswitch import settings, transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc
from fastswitch_cli import kvstore as kvstore_cli
from fastswitch_kvstore.config import REDIS_URL_ENVS, KVStoreConfig

CLUSTER_TOKEN = "cli-kvstore-test-cluster-token"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    kvstore_cli.add_arguments(parser)
    return parser.parse_args(argv)


def config(*argv: str, environ: dict[str, str] | None = None) -> KVStoreConfig:
    return settings.from_args(KVStoreConfig, parse(*argv), environ or {})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_help_names_each_flag_and_its_environment_variable() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fastswitch_cli.main", "kvstore", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())  # argparse wraps lines
    for flag, variable in [
        ("--listen", "FASTSWITCH_KVSTORE_LISTEN"),
        ("--redis-url", "FASTSWITCH_REDIS_URL"),
        ("--redis-url", "REDIS_URL"),
        ("--key-prefix", "FASTSWITCH_KVSTORE_KEY_PREFIX"),
        ("--log-level", "FASTSWITCH_LOG_LEVEL"),
        ("--cluster-token-file", "FASTSWITCH_CLUSTER_TOKEN_FILE"),
    ]:
        assert flag in help_text
        assert variable in help_text


def test_every_flag_reads_its_environment_variable() -> None:
    environ = {
        "FASTSWITCH_KVSTORE_LISTEN": "127.0.0.1:6000",
        "FASTSWITCH_KVSTORE_KEY_PREFIX": "cluster-b",
        "FASTSWITCH_LOG_LEVEL": "WARNING",
        "FASTSWITCH_REDIS_URL": "redis://fastswitch-env:1/0",
        "FASTSWITCH_CLUSTER_TOKEN": CLUSTER_TOKEN,
    }
    from_env = config(environ=environ)
    assert from_env.listen == "127.0.0.1:6000"
    assert from_env.key_prefix == "cluster-b"
    assert from_env.log_level == "warning"
    assert from_env.redis_url == "redis://fastswitch-env:1/0"
    assert from_env.security.cluster_token == CLUSTER_TOKEN
    flagged = config("--listen", "127.0.0.1:7000", "--key-prefix", "flag", "--log-level",
                     "debug", environ=environ)
    assert (flagged.listen, flagged.key_prefix, flagged.log_level) == (
        "127.0.0.1:7000", "flag", "debug")


def test_redis_url_comes_from_the_flag_then_the_env_then_embedded() -> None:
    both = {"FASTSWITCH_REDIS_URL": "redis://ours:1/0", "REDIS_URL": "redis://from-env:6379/0"}
    assert config("--redis-url", "redis://flag:1/0", environ=both).redis_url == "redis://flag:1/0"
    assert config(environ=both).redis_url == "redis://ours:1/0"
    env = {"REDIS_URL": "redis://from-env:6379/0"}
    assert config(environ=env).redis_url == env["REDIS_URL"]
    assert config().redis_url is None


def test_invalid_flag_value_fails_without_starting(capsys) -> None:
    assert kvstore_cli.run(parse("--listen", "nonsense")) == 2
    assert "listen" in capsys.readouterr().err


def test_a_redis_password_is_never_echoed(capsys) -> None:
    assert kvstore_cli.run(parse("--redis-url", "http://:s3cret-pw@host:1/0")) == 2
    err = capsys.readouterr().err
    assert "redis_url" in err
    assert "s3cret-pw" not in err
    assert "s3cret-pw" not in repr(config("--redis-url", "redis://:s3cret-pw@host:1/0"))


def health_status(address: str) -> int | None:
    with grpc.insecure_channel(address) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="fastswitch.v1.KVStore"), timeout=1.0
            )
        except grpc.RpcError:
            return None
    return response.status


def start_kvstore(*flags: str, environ: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """A kvstore process in its own process group, SERVING; returns it and its address."""
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "fastswitch_cli.main", "kvstore", "--listen", address, *flags],
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while health_status(address) != health_pb2.HealthCheckResponse.SERVING:
        if process.poll() is not None:
            raise AssertionError(f"kvstore exited: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError("kvstore never became SERVING")
        time.sleep(0.05)
    return process, address


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def test_process_serves_until_sigterm(redis_url: str) -> None:
    environ = {**os.environ, "FASTSWITCH_CLUSTER_TOKEN": CLUSTER_TOKEN}
    process, _ = start_kvstore("--redis-url", redis_url, "--log-level", "info", environ=environ)
    try:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        stop(process)
    log_records = [
        json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")
    ]
    messages = [record["msg"] for record in log_records]
    assert "kvstore serving" in messages
    assert "kvstore stopped" in messages


def process_stat(pid: int) -> tuple[str, str, int, int] | None:
    """(comm, state, ppid, starttime) of a live or zombie process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm, _, rest = stat[stat.index("(") + 1:].rpartition(")")
    fields = rest.split()
    return comm, fields[0], int(fields[1]), int(fields[19])


def children_of(pid: int) -> dict[int, tuple[str, int]]:
    """{child pid: (comm, starttime)} from a scan of /proc/*/stat."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := process_stat(int(entry.name))) is not None:
            comm, _, ppid, starttime = stat
            if ppid == pid:
                children[int(entry.name)] = (comm, starttime)
    return children


def is_gone(pid: int, starttime: int) -> bool:
    stat = process_stat(pid)
    # A zombie is dead (only not reaped yet); another starttime is another process.
    return stat is None or stat[1] in ("Z", "X") or stat[3] != starttime


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkilled_kvstore_takes_its_embedded_redis_with_it() -> None:
    environ = {key: value for key, value in os.environ.items()
               if key not in REDIS_URL_ENVS}  # no Redis given: embedded
    environ["FASTSWITCH_CLUSTER_TOKEN"] = CLUSTER_TOKEN
    process, address = start_kvstore(environ=environ)
    redis_children = {}
    try:
        redis_children = {pid: starttime for pid, (comm, starttime)
                          in children_of(process.pid).items() if comm.startswith("valkey")}
        assert len(redis_children) == 1, children_of(process.pid)
        # The real process took its credential from the environment.
        security = transport.TransportSecurity(cluster_token=CLUSTER_TOKEN)
        with transport.sync_channel(address, security) as channel:
            lookup = kvstore_pb2_grpc.KVStoreStub(channel).LookupKV
            request = kvstore_pb2.LookupKVRequest(conversation_id="nope")
            with pytest.raises(grpc.RpcError) as exc:
                lookup(request, timeout=5, metadata=transport.bearer_metadata(CLUSTER_TOKEN))
            assert exc.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as exc:
                lookup(request, timeout=5)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED

        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not all(is_gone(pid, start) for pid, start in redis_children.items()):
            assert time.monotonic() < deadline, "embedded valkey-server outlived its kvstore"
            time.sleep(0.02)
    finally:
        stop(process)
        for pid, starttime in redis_children.items():  # only if the test failed
            if not is_gone(pid, starttime):
                os.kill(pid, signal.SIGKILL)
