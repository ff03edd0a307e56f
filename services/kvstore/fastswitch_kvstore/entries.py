"""Plain values the index stores and returns; each validates itself where it is built.

Every string here comes from a caller and ends up in Redis keys, hashes and log lines, so each
is bounded and limited to a plain charset; error messages quote at most `MAX_QUOTED_CHARS`
characters of a refused value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastswitch_kvstore.errors import InvalidRequestError

# Conversation ids arrive scoped as "<tenant>:<conversation>" (64 + 1 + 128 characters at most).
MAX_ID_CHARS = 256
MAX_ADDRESS_CHARS = 256
MAX_QUOTED_CHARS = 64
# Ids go into Redis keys: no spaces, control characters, glob characters or braces.
ID_CHARS = "letters, digits and _.:@/+=-"
ID_RE = re.compile(r"[A-Za-z0-9_.:@/+=\-]+")
# host:port, [v6]:port, dns:///name:port, unix:/path...
ADDRESS_CHARS = "letters, digits and _.:@/%[]-"
ADDRESS_RE = re.compile(r"[A-Za-z0-9_.:@/%\[\]\-]*")


def quote(value: str) -> str:
    """What an error message quotes of a caller's string: at most MAX_QUOTED_CHARS of it."""
    if len(value) <= MAX_QUOTED_CHARS:
        return repr(value)
    return f"{value[:MAX_QUOTED_CHARS]!r}..."


def _require_string(name: str, value: str, *, max_chars: int, pattern: re.Pattern[str],
                    charset: str) -> None:
    if len(value) > max_chars:
        raise InvalidRequestError(
            f"{name} must be at most {max_chars} characters, got {len(value)}: {quote(value)}")
    if not pattern.fullmatch(value):
        raise InvalidRequestError(f"{name} may hold only {charset}, got {quote(value)}")


def require_id(name: str, value: str) -> None:
    """Ids are 1-MAX_ID_CHARS characters of ID_CHARS; raises InvalidRequestError otherwise."""
    if not value:
        raise InvalidRequestError(f"{name} must not be empty")
    _require_string(name, value, max_chars=MAX_ID_CHARS, pattern=ID_RE, charset=ID_CHARS)


def require_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise InvalidRequestError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class KVEntry:
    """One conversation's reusable KV, held in the host memory of exactly one worker."""

    conversation_id: str
    worker_id: str
    num_tokens: int
    prefix_hash: str  # may be empty
    num_bytes: int
    last_used_unix_ms: int

    def __post_init__(self) -> None:
        require_id("conversation_id", self.conversation_id)
        require_id("worker_id", self.worker_id)
        if self.prefix_hash:
            require_id("prefix_hash", self.prefix_hash)
        require_non_negative("num_tokens", self.num_tokens)
        require_non_negative("num_bytes", self.num_bytes)
        require_non_negative("last_used_unix_ms", self.last_used_unix_ms)


@dataclass(frozen=True)
class WorkerRegistration:
    """What a worker tells the index when it starts; `incarnation` changes on every restart."""

    worker_id: str
    incarnation: str
    capacity_bytes: int
    address: str = ""  # may be empty: the worker is not reachable by address

    def __post_init__(self) -> None:
        require_id("worker_id", self.worker_id)
        require_id("incarnation", self.incarnation)
        _require_string("address", self.address, max_chars=MAX_ADDRESS_CHARS,
                        pattern=ADDRESS_RE, charset=ADDRESS_CHARS)
        if self.capacity_bytes <= 0:
            raise InvalidRequestError(f"capacity_bytes must be > 0, got {self.capacity_bytes}")


@dataclass(frozen=True)
class WorkerSnapshot:
    """A worker's entries, most recently used first, with its capacity accounting."""

    entries: tuple[KVEntry, ...]
    capacity_bytes: int
    used_bytes: int
