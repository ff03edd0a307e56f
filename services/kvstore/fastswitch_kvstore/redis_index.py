"""The KV index kept in Redis: the only module of the kvstore that talks to Redis.

The data model and its invariants are described in `redis_schema`.

Every mutation is one optimistic transaction: WATCH the keys it reads, read, MULTI the writes,
EXEC; a concurrent writer touching a watched key makes EXEC fail and the whole step is redone,
so concurrent publishes never leave `used_bytes` inconsistent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fastswitch_kvstore.entries import (
    KVEntry,
    WorkerRegistration,
    WorkerSnapshot,
    quote,
    require_id,
)
from fastswitch_kvstore.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    WorkerNotRegisteredError,
)
from fastswitch_kvstore.redis_schema import RedisKeys, entry_from_hash, entry_to_hash

logger = logging.getLogger("fastswitch.kvstore.index")

T = TypeVar("T")
# Transactions that lose this many races in a row give up with ConflictError.
MAX_TRANSACTION_ATTEMPTS = 64
# Redis connections one kvstore process opens at most.
MAX_REDIS_CONNECTIONS = 128
# Longest pause between two attempts of a transaction that lost a race.
MAX_BACKOFF_S = 0.02
# LRU ids are read in batches of this many while choosing victims.
VICTIM_BATCH_SIZE = 64


def now_unix_ms() -> int:
    return time.time_ns() // 1_000_000


def connect(
    redis_url: str, *, timeout_s: float, max_connections: int = MAX_REDIS_CONNECTIONS
) -> aioredis.Redis:
    """A client that fails fast (short timeouts, two quick retries) when Redis is down.

    Each request in flight holds one connection; beyond `max_connections` requests wait up
    to `timeout_s` for one instead of failing.
    """
    pool = aioredis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=max_connections,
        timeout=timeout_s,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2),
    )
    return aioredis.Redis.from_pool(pool)  # owns the pool: closing the client closes it


@contextmanager
def _store_errors() -> Iterator[None]:
    """Turns redis-py exceptions into the index's own errors."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailableError(f"redis unavailable: {exc}") from exc
    except RedisError as exc:
        raise StoreError(f"redis error: {exc}") from exc


class RedisKVIndex:
    """Conversation -> worker index with per-worker capacity and LRU, stored in Redis.

    Every public method is one atomic step against Redis (all state lives there, so several
    kvstore replicas may share one Redis) and raises the errors of `fastswitch_kvstore.errors`.
    Methods that write a worker's accounting hold that worker's in-process lock.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        key_prefix: str,
        *,
        clock_unix_ms: Callable[[], int] = now_unix_ms,
    ) -> None:
        self._redis = client
        self._keys = RedisKeys(key_prefix)
        self._clock_unix_ms = clock_unix_ms
        # Writers of one worker's accounting take turns inside this process instead of
        # racing: WATCH alone makes N concurrent publishes on a worker cost O(N^2) attempts.
        # Races with other processes (replicas, touches, moves) still end in a retry.
        self._worker_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> bool:
        """True when Redis answers; never raises."""
        try:
            return bool(await self._redis.ping())
        except RedisError:
            return False

    async def _transact(self, body: Callable[[Pipeline], Awaitable[T]]) -> tuple[T, list[Any]]:
        """Runs `body` (WATCH + reads, then `pipe.multi()` + queued writes) and EXECs it.

        Returns the body's value and EXEC's results; redoes everything when a watched key
        changed in between. A body that raises aborts without writing.
        """
        for attempt in range(MAX_TRANSACTION_ATTEMPTS):
            with _store_errors():
                async with self._redis.pipeline(transaction=True) as pipe:
                    try:
                        value = await body(pipe)
                        return value, await pipe.execute()
                    except WatchError:
                        pass
            # Jittered exponential backoff: racing writers spread out instead of colliding
            # again on the next attempt.
            await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.0005 * 2**attempt)))
        raise ConflictError(f"gave up after {MAX_TRANSACTION_ATTEMPTS} conflicting attempts")

    async def register_worker(self, registration: WorkerRegistration) -> int:
        """Mutates (holds the worker's lock): records the worker; a new incarnation drops all
        its entries.

        Returns how many entries were dropped (0 for a first registration or the same
        incarnation, which keeps the entries and only updates capacity and address).
        """
        worker_key = self._keys.worker(registration.worker_id)
        lru_key = self._keys.worker_lru(registration.worker_id)

        async def body(pipe: Pipeline) -> int:
            await pipe.watch(worker_key, lru_key)
            incarnation = await pipe.hget(worker_key, "incarnation")
            fields = {
                "capacity_bytes": registration.capacity_bytes,
                "address": registration.address,
            }
            if incarnation == registration.incarnation:
                pipe.multi()
                pipe.hset(worker_key, mapping=fields)
                return 0
            stale_ids = await pipe.zrange(lru_key, 0, -1)
            pipe.multi()
            for conversation_id in stale_ids:
                pipe.delete(self._keys.conversation(conversation_id))
            pipe.delete(lru_key)
            fields.update(incarnation=registration.incarnation, used_bytes=0)
            pipe.hset(worker_key, mapping=fields)
            pipe.sadd(self._keys.workers(), registration.worker_id)
            return len(stale_ids)

        async with self._worker_locks[registration.worker_id]:
            num_dropped, _ = await self._transact(body)
        return num_dropped

    async def publish(self, entry: KVEntry) -> list[str]:
        """Mutates (holds the worker's lock): upserts the entry on its worker, moving it off
        any other worker.

        A `last_used_unix_ms` of 0 means now. When the worker then holds more bytes than its
        capacity, its least recently used other conversations are dropped from the index until
        it fits; returns their ids (least recent first) so the worker can free them.
        """
        if entry.last_used_unix_ms == 0:
            entry = dataclasses.replace(entry, last_used_unix_ms=self._clock_unix_ms())
        conversation_key = self._keys.conversation(entry.conversation_id)
        worker_key = self._keys.worker(entry.worker_id)
        lru_key = self._keys.worker_lru(entry.worker_id)

        async def body(pipe: Pipeline) -> list[str]:
            # The LRU set is watched only when choosing victims, so touches (which rewrite
            # it) do not make every publish on the worker start over.
            await pipe.watch(conversation_key, worker_key)
            worker = await pipe.hgetall(worker_key)
            if not worker:
                raise WorkerNotRegisteredError(
                    f"worker {quote(entry.worker_id)} is not registered; call RegisterWorker first"
                )
            old_worker_id, old_num_bytes = await pipe.hmget(
                conversation_key, "worker_id", "num_bytes"
            )
            # Moving off the old worker needs no watch on its keys: the writes there are
            # relative (ZREM, HINCRBY) and the watched conversation hash pins old_num_bytes.
            is_move = old_worker_id is not None and old_worker_id != entry.worker_id
            used_bytes = int(worker["used_bytes"]) + entry.num_bytes
            if old_worker_id == entry.worker_id:
                used_bytes -= int(old_num_bytes)
            num_bytes_to_free = used_bytes - int(worker["capacity_bytes"])
            victim_ids: list[str] = []
            victim_bytes = 0
            if num_bytes_to_free > 0:
                await pipe.watch(lru_key)
                victim_ids, victim_bytes = await self._pick_lru_victims(
                    pipe,
                    entry.worker_id,
                    exclude_conversation_id=entry.conversation_id,
                    num_bytes_to_free=num_bytes_to_free,
                )
            pipe.multi()
            if is_move:
                pipe.zrem(self._keys.worker_lru(old_worker_id), entry.conversation_id)
                pipe.hincrby(self._keys.worker(old_worker_id), "used_bytes", -int(old_num_bytes))
            pipe.hset(conversation_key, mapping=entry_to_hash(entry))
            pipe.zadd(lru_key, {entry.conversation_id: entry.last_used_unix_ms})
            pipe.hset(worker_key, "used_bytes", used_bytes - victim_bytes)
            if victim_ids:
                pipe.zrem(lru_key, *victim_ids)
                pipe.delete(*(self._keys.conversation(v) for v in victim_ids))
            return victim_ids

        async with self._worker_locks[entry.worker_id]:
            victim_ids, _ = await self._transact(body)
        return victim_ids

    async def _pick_lru_victims(
        self,
        pipe: Pipeline,
        worker_id: str,
        *,
        exclude_conversation_id: str,
        num_bytes_to_free: int,
    ) -> tuple[list[str], int]:
        """Reads only: least recently used conversations of a worker totalling at least
        `num_bytes_to_free` (or all of them); returns their ids and total bytes.

        `pipe` watches the worker's hash and LRU set: every change to its conversations'
        sizes or membership writes one of those, so the conversations need no watch. Reads go
        through `pipe` (one connection per transaction, so a bounded pool cannot deadlock).
        """
        lru_key = self._keys.worker_lru(worker_id)
        victim_ids: list[str] = []
        freed_bytes = 0
        for start in itertools.count(0, VICTIM_BATCH_SIZE):
            batch_ids = await pipe.zrange(lru_key, start, start + VICTIM_BATCH_SIZE - 1)
            for conversation_id in batch_ids:
                if conversation_id == exclude_conversation_id:
                    continue
                num_bytes = await pipe.hget(self._keys.conversation(conversation_id), "num_bytes")
                victim_ids.append(conversation_id)
                freed_bytes += int(num_bytes or 0)
                if freed_bytes >= num_bytes_to_free:
                    return victim_ids, freed_bytes
            if len(batch_ids) < VICTIM_BATCH_SIZE:
                break
        logger.warning(
            "entry alone exceeds its worker's capacity",
            extra={"worker_id": worker_id, "conversation_id": exclude_conversation_id},
        )
        return victim_ids, freed_bytes

    async def lookup(self, conversation_id: str) -> KVEntry:
        """Reads only. Raises NotFoundError when no worker holds the conversation."""
        require_id("conversation_id", conversation_id)
        with _store_errors():
            fields = await self._redis.hgetall(self._keys.conversation(conversation_id))
        if not fields:
            raise NotFoundError(f"no KV for conversation {quote(conversation_id)}")
        return entry_from_hash(conversation_id, fields)

    async def touch(self, conversation_id: str) -> int:
        """Mutates (no lock: it writes no accounting): marks the conversation used now (LRU);
        returns that time in unix ms.

        Raises NotFoundError when no worker holds the conversation.
        """
        require_id("conversation_id", conversation_id)
        conversation_key = self._keys.conversation(conversation_id)

        async def body(pipe: Pipeline) -> int:
            await pipe.watch(conversation_key)
            worker_id = await pipe.hget(conversation_key, "worker_id")
            if worker_id is None:
                raise NotFoundError(f"no KV for conversation {quote(conversation_id)}")
            last_used_unix_ms = self._clock_unix_ms()
            pipe.multi()
            pipe.hset(conversation_key, "last_used_unix_ms", last_used_unix_ms)
            pipe.zadd(self._keys.worker_lru(worker_id), {conversation_id: last_used_unix_ms})
            return last_used_unix_ms

        last_used_unix_ms, _ = await self._transact(body)
        return last_used_unix_ms

    async def evict(self, conversation_id: str, worker_id: str) -> bool:
        """Mutates (holds the worker's lock): forgets the conversation if `worker_id` holds
        it; idempotent.

        Returns whether an entry was removed (False: unknown, or held by another worker).
        """
        require_id("conversation_id", conversation_id)
        require_id("worker_id", worker_id)
        conversation_key = self._keys.conversation(conversation_id)

        async def body(pipe: Pipeline) -> bool:
            await pipe.watch(conversation_key)
            owner_id, num_bytes = await pipe.hmget(conversation_key, "worker_id", "num_bytes")
            if owner_id != worker_id:
                return False
            pipe.multi()
            pipe.delete(conversation_key)
            pipe.zrem(self._keys.worker_lru(worker_id), conversation_id)
            pipe.hincrby(self._keys.worker(worker_id), "used_bytes", -int(num_bytes))
            return True

        async with self._worker_locks[worker_id]:
            is_removed, _ = await self._transact(body)
        return is_removed

    async def snapshot(self, worker_id: str) -> WorkerSnapshot:
        """Reads only (holds the worker's lock, so busy writers cannot starve it): a consistent
        view of one worker. Raises NotFoundError if unregistered."""
        require_id("worker_id", worker_id)
        worker_key = self._keys.worker(worker_id)
        lru_key = self._keys.worker_lru(worker_id)

        async def body(pipe: Pipeline) -> tuple[dict[str, str], list[str]]:
            await pipe.watch(worker_key, lru_key)
            worker = await pipe.hgetall(worker_key)
            if not worker:
                raise NotFoundError(f"worker {quote(worker_id)} is not registered")
            recent_first_ids = await pipe.zrevrange(lru_key, 0, -1)
            pipe.multi()
            for conversation_id in recent_first_ids:
                pipe.hgetall(self._keys.conversation(conversation_id))
            return worker, recent_first_ids

        async with self._worker_locks[worker_id]:
            (worker, recent_first_ids), hashes = await self._transact(body)
        entries = tuple(
            entry_from_hash(c, fields)
            for c, fields in zip(recent_first_ids, hashes, strict=True)
            if fields
        )
        return WorkerSnapshot(
            entries=entries,
            capacity_bytes=int(worker["capacity_bytes"]),
            used_bytes=int(worker["used_bytes"]),
        )

    async def check_integrity(self) -> None:
        """Reads only; raises AssertionError if an invariant of `redis_schema` fails.

        Not atomic: call it while nothing writes (tests call it after each mutation).
        """
        with _store_errors():
            worker_ids = await self._redis.smembers(self._keys.workers())
            held_by: dict[str, str] = {}
            for worker_id in worker_ids:
                worker = await self._redis.hgetall(self._keys.worker(worker_id))
                _check(bool(worker), f"worker {worker_id} listed but has no hash")
                ranked = await self._redis.zrange(
                    self._keys.worker_lru(worker_id), 0, -1, withscores=True
                )
                total_bytes = 0
                for conversation_id, score in ranked:
                    fields = await self._redis.hgetall(self._keys.conversation(conversation_id))
                    _check(bool(fields), f"{conversation_id} in lru of {worker_id} has no hash")
                    entry = entry_from_hash(conversation_id, fields)
                    _check(entry.worker_id == worker_id, f"{conversation_id} in wrong lru")
                    _check(entry.last_used_unix_ms == int(score), f"{conversation_id} lru score")
                    total_bytes += entry.num_bytes
                    held_by[conversation_id] = worker_id
                _check(
                    int(worker["used_bytes"]) == total_bytes,
                    f"worker {worker_id} used_bytes {worker['used_bytes']} != {total_bytes}",
                )
            async for key in self._redis.scan_iter(match=self._keys.all_conversations_pattern()):
                worker_id = await self._redis.hget(key, "worker_id")
                conversation_id = key.removeprefix(self._keys.conversation(""))
                _check(held_by.get(conversation_id) == worker_id, f"{key} in no worker's lru")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(f"kv index integrity: {message}")
