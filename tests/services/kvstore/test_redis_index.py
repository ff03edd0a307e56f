"""RedisKVIndex against a real Redis: accounting, LRU, incarnations, concurrency, integrity."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from fastswitch_kvstore.entries import (
    MAX_ADDRESS_CHARS,
    MAX_ID_CHARS,
    MAX_QUOTED_CHARS,
    KVEntry,
    WorkerRegistration,
    quote,
)
from fastswitch_kvstore.errors import (
    InvalidRequestError,
    NotFoundError,
    StoreError,
    WorkerNotRegisteredError,
)
from fastswitch_kvstore.redis_index import RedisKVIndex, connect
from fastswitch_kvstore.redis_schema import RedisKeys


def kv(conversation_id: str, worker_id: str = "w1", num_bytes: int = 100, at_ms: int = 0):
    return KVEntry(
        conversation_id=conversation_id,
        worker_id=worker_id,
        num_tokens=num_bytes // 10,
        prefix_hash=f"hash-{conversation_id}",
        num_bytes=num_bytes,
        last_used_unix_ms=at_ms,
    )


async def register(index: RedisKVIndex, worker_id: str, capacity_bytes: int, incarnation="i1"):
    return await index.register_worker(
        WorkerRegistration(worker_id, incarnation, capacity_bytes, f"{worker_id}:1")
    )


async def test_published_entry_is_found_with_its_fields(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    assert await index.publish(kv("c1", at_ms=1234)) == []
    await index.check_integrity()
    assert await index.lookup("c1") == kv("c1", at_ms=1234)


async def test_zero_last_used_means_now(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    before_ms = time.time_ns() // 1_000_000
    await index.publish(kv("c1", at_ms=0))
    after_ms = time.time_ns() // 1_000_000
    assert before_ms <= (await index.lookup("c1")).last_used_unix_ms <= after_ms


async def test_republishing_on_the_same_worker_replaces_its_bytes(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    await index.publish(kv("c1", num_bytes=100, at_ms=1))
    await index.publish(kv("c1", num_bytes=300, at_ms=2))
    await index.check_integrity()
    snapshot = await index.snapshot("w1")
    assert snapshot.used_bytes == 300
    assert [e.num_bytes for e in snapshot.entries] == [300]


async def test_publishing_on_another_worker_moves_the_conversation(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    await register(index, "w2", 1000)
    await index.publish(kv("c1", "w1", num_bytes=100, at_ms=1))
    await index.publish(kv("c2", "w1", num_bytes=50, at_ms=2))
    await index.publish(kv("c1", "w2", num_bytes=120, at_ms=3))
    await index.check_integrity()
    assert (await index.lookup("c1")).worker_id == "w2"
    w1, w2 = await index.snapshot("w1"), await index.snapshot("w2")
    assert (w1.used_bytes, [e.conversation_id for e in w1.entries]) == (50, ["c2"])
    assert (w2.used_bytes, [e.conversation_id for e in w2.entries]) == (120, ["c1"])


async def test_over_capacity_drops_least_recently_used_first(index: RedisKVIndex) -> None:
    await register(index, "w1", 300)
    for at_ms, conversation_id in enumerate(["a", "b", "c"], start=1):
        assert await index.publish(kv(conversation_id, at_ms=at_ms)) == []
    await index.touch("a")  # now "b" is the least recently used
    assert await index.publish(kv("d", num_bytes=150, at_ms=10**15)) == ["b", "c"]
    await index.check_integrity()
    snapshot = await index.snapshot("w1")
    assert [e.conversation_id for e in snapshot.entries] == ["d", "a"]
    assert snapshot.used_bytes == 250
    for conversation_id in ("b", "c"):
        with pytest.raises(NotFoundError):
            await index.lookup(conversation_id)


async def test_the_entry_just_published_is_never_suggested(index: RedisKVIndex) -> None:
    await register(index, "w1", 300)
    await index.publish(kv("old", at_ms=1))
    await index.publish(kv("new", at_ms=2))
    # Republishing the least recently used one, grown: the other one has to go.
    assert await index.publish(kv("old", num_bytes=250, at_ms=3)) == ["new"]
    await index.check_integrity()


async def test_entry_larger_than_capacity_stays_alone(index: RedisKVIndex) -> None:
    await register(index, "w1", 300)
    await index.publish(kv("a", at_ms=1))
    await index.publish(kv("b", at_ms=2))
    assert await index.publish(kv("huge", num_bytes=500, at_ms=3)) == ["a", "b"]
    await index.check_integrity()
    snapshot = await index.snapshot("w1")
    assert ([e.conversation_id for e in snapshot.entries], snapshot.used_bytes) == (["huge"], 500)


async def test_new_incarnation_drops_entries_same_one_keeps_them(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000, incarnation="boot-1")
    await register(index, "w2", 1000)
    await index.publish(kv("a", "w1", at_ms=1))
    await index.publish(kv("b", "w1", at_ms=2))
    await index.publish(kv("other", "w2", at_ms=3))
    assert await register(index, "w1", 2000, incarnation="boot-1") == 0
    assert (await index.snapshot("w1")).capacity_bytes == 2000
    assert len((await index.snapshot("w1")).entries) == 2
    assert await register(index, "w1", 1000, incarnation="boot-2") == 2
    await index.check_integrity()
    snapshot = await index.snapshot("w1")
    assert (snapshot.entries, snapshot.used_bytes) == ((), 0)
    with pytest.raises(NotFoundError):
        await index.lookup("a")
    assert (await index.lookup("other")).worker_id == "w2"


async def test_evict_is_idempotent_and_only_for_the_holder(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    await register(index, "w2", 1000)
    await index.publish(kv("c1", "w1", at_ms=1))
    assert await index.evict("c1", "w2") is False
    assert (await index.lookup("c1")).worker_id == "w1"
    assert await index.evict("c1", "w1") is True
    assert await index.evict("c1", "w1") is False
    await index.check_integrity()
    assert (await index.snapshot("w1")).used_bytes == 0


async def test_touch_moves_an_entry_to_the_front(index: RedisKVIndex) -> None:
    await register(index, "w1", 1000)
    await index.publish(kv("a", at_ms=1))
    await index.publish(kv("b", at_ms=2))
    touched_ms = await index.touch("a")
    await index.check_integrity()
    assert (await index.lookup("a")).last_used_unix_ms == touched_ms
    assert [e.conversation_id for e in (await index.snapshot("w1")).entries] == ["a", "b"]
    with pytest.raises(NotFoundError):
        await index.touch("unknown")


async def test_unregistered_worker_cannot_publish(index: RedisKVIndex) -> None:
    with pytest.raises(WorkerNotRegisteredError):
        await index.publish(kv("c1", "ghost"))
    with pytest.raises(NotFoundError):
        await index.snapshot("ghost")


@pytest.mark.parametrize(
    "make",
    [
        lambda: kv(""),
        lambda: kv("c1", worker_id=""),
        lambda: kv("c1", num_bytes=-1),
        lambda: kv("c1", at_ms=-5),
        lambda: WorkerRegistration("w1", "", 100),
        lambda: WorkerRegistration("w1", "i1", 0),
        lambda: kv("c" * (MAX_ID_CHARS + 1)),
        lambda: kv("c1", worker_id="w" * (MAX_ID_CHARS + 1)),
        lambda: kv("has space"),
        lambda: kv("c1", worker_id="tab\there"),
        lambda: WorkerRegistration("w1", "i" * (MAX_ID_CHARS + 1), 100),
        lambda: WorkerRegistration("w1", "i1", 100, address="a" * (MAX_ADDRESS_CHARS + 1)),
        lambda: WorkerRegistration("w1", "i1", 100, address="host:1\r\nX-Injected: 1"),
    ],
)
def test_invalid_values_are_refused_where_built(make) -> None:
    with pytest.raises(InvalidRequestError):
        make()


def test_errors_quote_a_bounded_part_of_a_refused_value() -> None:
    assert quote("short") == "'short'"
    assert quote("x" * 10_000) == repr("x" * MAX_QUOTED_CHARS) + "..."
    with pytest.raises(InvalidRequestError) as exc:
        kv("z" * 10_000)
    message = str(exc.value)
    assert "got 10000" in message and "z" * (MAX_QUOTED_CHARS + 1) not in message


def test_longest_valid_values_are_accepted() -> None:
    scoped_id = "t" * 64 + ":" + "c" * 128  # "<tenant>:<conversation>" at their limits
    assert kv(scoped_id, worker_id="w" * MAX_ID_CHARS).conversation_id == scoped_id
    assert KVEntry("c1", "w1", 1, "", 1, 1).prefix_hash == ""  # a hash is optional
    assert WorkerRegistration("w1", "i1", 1).address == ""


async def test_a_foreign_value_under_our_keys_is_a_store_error(
    index: RedisKVIndex, redis_client: redis.Redis
) -> None:
    redis_client.hset(RedisKeys("fastswitch").conversation("c1"), mapping={"worker_id": "w1"})
    with pytest.raises(StoreError, match="malformed index entry"):
        await index.lookup("c1")


async def test_racing_replicas_keep_accounting_consistent(
    index: RedisKVIndex, redis_url: str
) -> None:
    """Two index instances (two kvstore replicas) on one Redis: their per-worker locks do not
    see each other, so only the WATCH transactions keep the books straight."""
    other_replica = RedisKVIndex(connect(redis_url, timeout_s=1.0), "fastswitch")
    capacity_bytes = 1000
    await register(index, "w1", capacity_bytes)
    await register(index, "w2", capacity_bytes)
    # 120 racing publishes over 12 conversations that hop between two workers and overflow them.
    publishes = [
        (index, other_replica)[i % 2].publish(
            kv(f"c{i % 12}", f"w{1 + (i // 2) % 2}", num_bytes=50 + (i % 7) * 40, at_ms=i + 1)
        )
        for i in range(120)
    ]
    try:
        await asyncio.gather(*publishes)
    finally:
        await other_replica.close()
    await index.check_integrity()
    for worker_id in ("w1", "w2"):
        snapshot = await index.snapshot(worker_id)
        assert snapshot.used_bytes == sum(e.num_bytes for e in snapshot.entries)
        assert snapshot.used_bytes <= capacity_bytes


async def test_integrity_check_catches_corrupt_accounting(
    index: RedisKVIndex, redis_client: redis.Redis
) -> None:
    await register(index, "w1", 1000)
    await index.publish(kv("c1", at_ms=1))
    await index.check_integrity()
    redis_client.hset(RedisKeys("fastswitch").worker("w1"), "used_bytes", 7)
    with pytest.raises(AssertionError, match="used_bytes"):
        await index.check_integrity()


def test_keys_of_different_kinds_never_collide() -> None:
    keys = RedisKeys("fastswitch")
    built = {keys.conversation("x:lru"), keys.worker("x"), keys.worker_lru("x"), keys.workers()}
    assert len(built) == 4
    assert all(key.startswith("{fastswitch}:") for key in built)
    with pytest.raises(ValueError):
        RedisKeys("bad prefix*")
