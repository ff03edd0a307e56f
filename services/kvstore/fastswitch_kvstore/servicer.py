"""fastswitch.v1.KVStore over gRPC: adapts protos to `RedisKVIndex`, errors to status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc
from fastswitch_kvstore.entries import KVEntry, WorkerRegistration
from fastswitch_kvstore.errors import (
    ConflictError,
    InvalidRequestError,
    KVIndexError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
    WorkerNotRegisteredError,
)
from fastswitch_kvstore.metrics import KVStoreMetrics
from fastswitch_kvstore.redis_index import RedisKVIndex

logger = logging.getLogger("fastswitch.kvstore.servicer")

SERVICE_NAME = kvstore_pb2.DESCRIPTOR.services_by_name["KVStore"].full_name

_STATUS_BY_ERROR: tuple[tuple[type[KVIndexError], grpc.StatusCode], ...] = (
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (WorkerNotRegisteredError, grpc.StatusCode.FAILED_PRECONDITION),
    (ConflictError, grpc.StatusCode.ABORTED),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreError, grpc.StatusCode.INTERNAL),
)
# Expected outcomes a caller handles; logged quietly.
_ROUTINE_CODES = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}


def _status_code(error: KVIndexError) -> grpc.StatusCode:
    for error_type, code in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[Any]]


def _rpc(handler: Handler) -> Handler:
    """Turns index errors into `context.abort` with their status; a bug in one request
    becomes INTERNAL for that request only."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            response = await handler(self, request, context)
            self._count(handler.__name__, grpc.StatusCode.OK)
            return response
        except KVIndexError as error:
            code = _status_code(error)
            self._count(handler.__name__, code)
            level = logging.DEBUG if code in _ROUTINE_CODES else logging.WARNING
            logger.log(
                level,
                "request failed",
                extra={"method": handler.__name__, "code": code.name, "error": str(error)},
            )
            await context.abort(code, str(error))
        except grpc.aio.AbortError:
            raise
        except Exception:
            logger.exception("request crashed", extra={"method": handler.__name__})
            self._count(handler.__name__, grpc.StatusCode.INTERNAL)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error in {handler.__name__}")

    return wrapper


def entry_to_proto(entry: KVEntry) -> kvstore_pb2.KVEntry:
    return kvstore_pb2.KVEntry(
        conversation_id=entry.conversation_id,
        worker_id=entry.worker_id,
        num_tokens=entry.num_tokens,
        prefix_hash=entry.prefix_hash,
        num_bytes=entry.num_bytes,
        last_used_unix_ms=entry.last_used_unix_ms,
    )


def entry_from_proto(message: kvstore_pb2.KVEntry) -> KVEntry:
    """Raises InvalidRequestError for empty ids or negative sizes."""
    return KVEntry(
        conversation_id=message.conversation_id,
        worker_id=message.worker_id,
        num_tokens=message.num_tokens,
        prefix_hash=message.prefix_hash,
        num_bytes=message.num_bytes,
        last_used_unix_ms=message.last_used_unix_ms,
    )


class KVStoreServicer(kvstore_pb2_grpc.KVStoreServicer):
    def __init__(self, index: RedisKVIndex, metrics: KVStoreMetrics | None = None) -> None:
        self._index = index
        self._metrics = metrics

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        if self._metrics is not None:
            self._metrics.count(method, code.name)

    @_rpc
    async def RegisterWorker(self, request, context):
        registration = WorkerRegistration(
            worker_id=request.worker_id,
            incarnation=request.incarnation,
            capacity_bytes=request.capacity_bytes,
            address=request.address,
        )
        num_dropped = await self._index.register_worker(registration)
        logger.info(
            "worker registered",
            extra={
                "worker_id": registration.worker_id,
                "incarnation": registration.incarnation,
                "capacity_bytes": registration.capacity_bytes,
                "address": registration.address,
                "num_dropped_entries": num_dropped,
            },
        )
        return kvstore_pb2.RegisterWorkerResponse(num_dropped_entries=num_dropped)

    @_rpc
    async def PublishKV(self, request, context):
        if not request.HasField("entry"):
            raise InvalidRequestError("entry is required")
        entry = entry_from_proto(request.entry)
        evict_ids = await self._index.publish(entry)
        if evict_ids:
            logger.info(
                "worker over capacity: asking it to evict",
                extra={"worker_id": entry.worker_id, "evict_conversation_ids": evict_ids},
            )
        return kvstore_pb2.PublishKVResponse(evict_conversation_ids=evict_ids)

    @_rpc
    async def LookupKV(self, request, context):
        entry = await self._index.lookup(request.conversation_id)
        return kvstore_pb2.LookupKVResponse(entry=entry_to_proto(entry))

    @_rpc
    async def TouchKV(self, request, context):
        await self._index.touch(request.conversation_id)
        return kvstore_pb2.TouchKVResponse()

    @_rpc
    async def EvictKV(self, request, context):
        await self._index.evict(request.conversation_id, request.worker_id)
        return kvstore_pb2.EvictKVResponse()

    @_rpc
    async def GetWorkerSnapshot(self, request, context):
        snapshot = await self._index.snapshot(request.worker_id)
        return kvstore_pb2.GetWorkerSnapshotResponse(
            entries=[entry_to_proto(e) for e in snapshot.entries],
            capacity_bytes=snapshot.capacity_bytes,
            used_bytes=snapshot.used_bytes,
        )
