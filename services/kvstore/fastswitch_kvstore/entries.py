"""Plain values the index stores and returns; each validates itself where it is built."""

from __future__ import annotations

from dataclasses import dataclass

from fastswitch_kvstore.errors import InvalidRequestError


def require_id(name: str, value: str) -> None:
    """Ids are non-empty strings; raises InvalidRequestError otherwise."""
    if not value:
        raise InvalidRequestError(f"{name} must not be empty")


def require_non_negative(name: str, value: int) -> None:
    if value < 0:
        raise InvalidRequestError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class KVEntry:
    """One conversation's reusable KV, held in the host memory of exactly one worker."""

    conversation_id: str
    worker_id: str
    num_tokens: int
    prefix_hash: str
    num_bytes: int
    last_used_unix_ms: int

    def __post_init__(self) -> None:
        require_id("conversation_id", self.conversation_id)
        require_id("worker_id", self.worker_id)
        require_non_negative("num_tokens", self.num_tokens)
        require_non_negative("num_bytes", self.num_bytes)
        require_non_negative("last_used_unix_ms", self.last_used_unix_ms)


@dataclass(frozen=True)
class WorkerRegistration:
    """What a worker tells the index when it starts; `incarnation` changes on every restart."""

    worker_id: str
    incarnation: str
    capacity_bytes: int
    address: str = ""

    def __post_init__(self) -> None:
        require_id("worker_id", self.worker_id)
        require_id("incarnation", self.incarnation)
        if self.capacity_bytes <= 0:
            raise InvalidRequestError(f"capacity_bytes must be > 0, got {self.capacity_bytes}")


@dataclass(frozen=True)
class WorkerSnapshot:
    """A worker's entries, most recently used first, with its capacity accounting."""

    entries: tuple[KVEntry, ...]
    capacity_bytes: int
    used_bytes: int
