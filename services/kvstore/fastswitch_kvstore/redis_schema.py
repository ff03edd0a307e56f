"""Layout of the KV index in Redis: key names and hash fields. No I/O here.

Keys (each built by `RedisKeys`, nowhere else):
  conv:<conversation_id>  hash  worker_id, num_tokens, prefix_hash, num_bytes, last_used_unix_ms
  worker:<worker_id>      hash  incarnation, capacity_bytes, address, used_bytes
  lru:<worker_id>         zset  conversation_id -> last_used_unix_ms (least recent first)
  workers                 set   registered worker ids
Invariants (checked by `RedisKVIndex.check_integrity`): a conversation is in `lru:<w>` exactly
when its hash says `worker_id = w`, with its `last_used_unix_ms` as score; a worker's
`used_bytes` is the sum of `num_bytes` of its conversations.
"""

from __future__ import annotations

from fastswitch_kvstore.config import KEY_PREFIX_RE
from fastswitch_kvstore.entries import KVEntry, quote
from fastswitch_kvstore.errors import StoreError


class RedisKeys:
    """Builds every Redis key of the index; nothing else formats a key.

    The prefix sits in braces, a Redis Cluster hash tag: all keys of one prefix share a slot,
    so the multi-key transactions of `RedisKVIndex` stay legal on a cluster too.
    """

    def __init__(self, key_prefix: str) -> None:
        if not KEY_PREFIX_RE.fullmatch(key_prefix):
            raise ValueError(f"key_prefix must match {KEY_PREFIX_RE.pattern}, got {key_prefix!r}")
        self._key_prefix = key_prefix

    def _key(self, kind: str, ident: str | None = None) -> str:
        # The id goes last and kinds differ, so no two (kind, id) pairs give the same key.
        base = f"{{{self._key_prefix}}}:kv:{kind}"
        return base if ident is None else f"{base}:{ident}"

    def conversation(self, conversation_id: str) -> str:
        return self._key("conv", conversation_id)

    def all_conversations_pattern(self) -> str:
        # SCAN pattern; the prefix has no glob characters (KEY_PREFIX_RE).
        return self._key("conv", "*")

    def worker(self, worker_id: str) -> str:
        return self._key("worker", worker_id)

    def worker_lru(self, worker_id: str) -> str:
        return self._key("lru", worker_id)

    def workers(self) -> str:
        return self._key("workers")


def entry_from_hash(conversation_id: str, fields: dict[str, str]) -> KVEntry:
    """Raises StoreError when the hash is not one `entry_to_hash` wrote (a foreign value)."""
    try:
        return KVEntry(
            conversation_id=conversation_id,
            worker_id=fields["worker_id"],
            num_tokens=int(fields["num_tokens"]),
            prefix_hash=fields["prefix_hash"],
            num_bytes=int(fields["num_bytes"]),
            last_used_unix_ms=int(fields["last_used_unix_ms"]),
        )
    except (KeyError, ValueError) as exc:  # InvalidRequestError is a ValueError
        raise StoreError(
            f"malformed index entry for conversation {quote(conversation_id)}: {exc}"
        ) from exc


def entry_to_hash(entry: KVEntry) -> dict[str, str | int]:
    return {
        "worker_id": entry.worker_id,
        "num_tokens": entry.num_tokens,
        "prefix_hash": entry.prefix_hash,
        "num_bytes": entry.num_bytes,
        "last_used_unix_ms": entry.last_used_unix_ms,
    }
