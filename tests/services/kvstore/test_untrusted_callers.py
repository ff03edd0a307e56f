"""What a real kvstore does with callers it cannot trust: no cluster credential
(UNAUTHENTICATED), undecodable bytes, oversize or odd strings (INVALID_ARGUMENT, quoting at most
a bounded part of the value); after each it keeps serving the cluster's own components."""

from __future__ import annotations

import grpc
import pytest

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.entries import MAX_ID_CHARS, MAX_QUOTED_CHARS

SERVICE = "/fastswitch.v1.KVStore/"
# Scoped conversation ids are "<tenant>:<conversation>", up to 64 + 1 + 128 characters.
LONGEST_SCOPED_ID = "t" * 64 + ":" + "c" * 128


def entry(conversation_id: str = "c1", worker_id: str = "w1", prefix_hash: str = "abc123"):
    return kvstore_pb2.KVEntry(conversation_id=conversation_id, worker_id=worker_id,
                               num_tokens=4, prefix_hash=prefix_hash, num_bytes=16,
                               last_used_unix_ms=5)


def register(worker_id: str = "w1", incarnation: str = "boot-1", address: str = "w1:50061"):
    return kvstore_pb2.RegisterWorkerRequest(worker_id=worker_id, incarnation=incarnation,
                                             capacity_bytes=1000, address=address)


# One valid request per method, in an order that works against an empty index.
VALID_CALLS = [
    ("RegisterWorker", register()),
    ("PublishKV", kvstore_pb2.PublishKVRequest(entry=entry())),
    ("LookupKV", kvstore_pb2.LookupKVRequest(conversation_id="c1")),
    ("TouchKV", kvstore_pb2.TouchKVRequest(conversation_id="c1")),
    ("GetWorkerSnapshot", kvstore_pb2.GetWorkerSnapshotRequest(worker_id="w1")),
    ("EvictKV", kvstore_pb2.EvictKVRequest(conversation_id="c1", worker_id="w1")),
]
METHODS = [method for method, _ in VALID_CALLS]


async def assert_still_serving(stub) -> None:
    await stub.RegisterWorker(register("w-probe"))
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=entry("c-probe", "w-probe")))
    found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id="c-probe"))
    assert found.entry.worker_id == "w-probe"


@pytest.mark.parametrize("presented_token", [None, "a-wrong-token-of-enough-chars"])
async def test_calls_without_the_cluster_credential_are_unauthenticated(
    kvstore_port: int, kvstore_config: KVStoreConfig, stub, presented_token: str | None
) -> None:
    security = transport.TransportSecurity(cluster_token=presented_token or "")
    async with transport.channel(f"127.0.0.1:{kvstore_port}", security) as channel:
        outsider = kvstore_pb2_grpc.KVStoreStub(channel)
        for method, request in VALID_CALLS:
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await getattr(outsider, method)(request)
            assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
    # Nothing the outsider sent was applied; with the credential every method works.
    for method, request in VALID_CALLS:
        if method == "LookupKV":
            assert (await stub.LookupKV(request)).entry == entry()
        else:
            await getattr(stub, method)(request)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("garbage", [b"\xff\xff\xff\xff", b"\x0a\x02\xff\xfe"],
                         ids=["corrupt-wire-format", "bad-utf8-string"])
async def test_undecodable_bytes_are_invalid_argument(
    kvstore_port: int, kvstore_config: KVStoreConfig, stub, method: str, garbage: bytes
) -> None:
    async with transport.channel(f"127.0.0.1:{kvstore_port}", kvstore_config.security) as channel:
        raw = channel.unary_unary(SERVICE + method, request_serializer=lambda data: data,
                                  response_deserializer=lambda data: data)
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await raw(garbage, timeout=5)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == transport.UNDECODABLE_MESSAGE
    await assert_still_serving(stub)


OVERSIZE = "x" * (MAX_ID_CHARS + 1)
HUGE = "y" * 100_000

BAD_STRING_CALLS = [
    ("RegisterWorker", "worker_id", lambda v: register(worker_id=v)),
    ("RegisterWorker", "incarnation", lambda v: register(incarnation=v)),
    ("RegisterWorker", "address", lambda v: register(address=v)),
    ("PublishKV", "conversation_id",
     lambda v: kvstore_pb2.PublishKVRequest(entry=entry(conversation_id=v))),
    ("PublishKV", "worker_id", lambda v: kvstore_pb2.PublishKVRequest(entry=entry(worker_id=v))),
    ("PublishKV", "prefix_hash",
     lambda v: kvstore_pb2.PublishKVRequest(entry=entry(prefix_hash=v))),
    ("LookupKV", "conversation_id", lambda v: kvstore_pb2.LookupKVRequest(conversation_id=v)),
    ("TouchKV", "conversation_id", lambda v: kvstore_pb2.TouchKVRequest(conversation_id=v)),
    ("EvictKV", "conversation_id",
     lambda v: kvstore_pb2.EvictKVRequest(conversation_id=v, worker_id="w1")),
    ("EvictKV", "worker_id", lambda v: kvstore_pb2.EvictKVRequest(conversation_id="c1", worker_id=v)),
    ("GetWorkerSnapshot", "worker_id", lambda v: kvstore_pb2.GetWorkerSnapshotRequest(worker_id=v)),
]


@pytest.mark.parametrize(("method", "field", "make"), BAD_STRING_CALLS,
                         ids=[f"{m}.{f}" for m, f, _ in BAD_STRING_CALLS])
@pytest.mark.parametrize("value", [OVERSIZE, HUGE], ids=["just-over", "huge"])
async def test_oversize_strings_are_refused_without_being_echoed(
    stub, method: str, field: str, make, value: str
) -> None:
    await stub.RegisterWorker(register())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await getattr(stub, method)(make(value))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = exc.value.details()
    assert field in details and f"got {len(value)}" in details
    assert value[0] * (MAX_QUOTED_CHARS + 1) not in details
    assert len(details) < 200
    await assert_still_serving(stub)


@pytest.mark.parametrize(("method", "field", "make"), BAD_STRING_CALLS,
                         ids=[f"{m}.{f}" for m, f, _ in BAD_STRING_CALLS])
@pytest.mark.parametrize("value", ["has space", "line\nbreak", "glob*", "{brace}", "ünïcode"])
async def test_strings_outside_the_charset_are_refused(
    stub, method: str, field: str, make, value: str
) -> None:
    await stub.RegisterWorker(register())
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await getattr(stub, method)(make(value))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in exc.value.details()
    await assert_still_serving(stub)


async def test_longest_scoped_ids_and_odd_but_valid_values_work(stub, index) -> None:
    worker_id = "w" * MAX_ID_CHARS
    await stub.RegisterWorker(register(worker_id=worker_id, incarnation="Zm9vYmFy+/==",
                                       address="[fd00::1%eth0]:50061"))
    published = entry(conversation_id=LONGEST_SCOPED_ID, worker_id=worker_id,
                      prefix_hash="sha256:" + "f" * 64)
    await stub.PublishKV(kvstore_pb2.PublishKVRequest(entry=published))
    found = await stub.LookupKV(kvstore_pb2.LookupKVRequest(conversation_id=LONGEST_SCOPED_ID))
    assert found.entry == published
    await index.check_integrity()
