"""A scheduler's session with this worker: its events, its epoch, its end.

One session per worker. A scheduler says which generation it is with its epoch (call metadata
SCHEDULER_EPOCH_METADATA, a decimal integer: its start time in ns); the newer or equal epoch
takes the session over, an older one is refused (see WorkerService.open_session).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import grpc

from fastswitch import transport
from fastswitch.v1 import worker_pb2

SUPERSEDED_MESSAGE = "superseded by a newer scheduler session"
_EPOCH = re.compile(r"[0-9]{1,20}")


class SessionRefusedError(Exception):
    """A scheduler with a newer epoch holds the session: FAILED_PRECONDITION, this message."""


class Session:
    """Mutated on the asyncio loop only. `closed` wakes the stream the moment the session ends,
    whoever ends it (hand-over, drain, an engine failure, the stream itself)."""

    def __init__(self, epoch: int = 0, peer: str = "") -> None:
        self.epoch = epoch
        self.peer = peer
        self.events: asyncio.Queue[worker_pb2.SessionResponse] = asyncio.Queue()
        self.closed = asyncio.Event()
        # How the stream ends once closed: None = OK, else this status and message.
        self.end_code: grpc.StatusCode | None = None
        self.end_message = ""

    def close(self, code: grpc.StatusCode | None = None, message: str = "") -> None:
        """Mutates: marks the session ended; the first close decides the stream's status."""
        if self.closed.is_set():
            return
        self.end_code = code
        self.end_message = message
        self.closed.set()


def parse_epoch(metadata: Sequence[tuple[str, str | bytes]] | None) -> int:
    """The caller's scheduler epoch: a decimal integer in SCHEDULER_EPOCH_METADATA; missing or
    malformed (signs, spaces, non-ASCII digits, absurd lengths) counts as 0."""
    value = next((v for k, v in metadata or () if k == transport.SCHEDULER_EPOCH_METADATA), "")
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    return int(value) if _EPOCH.fullmatch(value) else 0


def loggable(value: str, max_chars: int = 64) -> str:
    """A caller-chosen string cut to a length fit for a log line."""
    return value if len(value) <= max_chars else f"{value[:max_chars]}...({len(value)} chars)"
