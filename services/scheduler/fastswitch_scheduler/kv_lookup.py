"""The scheduler's only link to the kvstore: where does a conversation's KV live?"""

from __future__ import annotations

import logging

import grpc

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc

log = logging.getLogger("fastswitch.scheduler.kv")
LOOKUP_TIMEOUT_S = 0.5


class KVLookup:
    def __init__(self, address: str, security: transport.TransportSecurity) -> None:
        self._channel = transport.channel(address, security)
        self._stub = kvstore_pb2_grpc.KVStoreStub(self._channel)

    async def worker_of(self, conversation_id: str) -> str | None:
        """The worker id holding the conversation's KV; None when nowhere or on error."""
        try:
            response = await self._stub.LookupKV(
                kvstore_pb2.LookupKVRequest(conversation_id=conversation_id), timeout=LOOKUP_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            if exc.code() is not grpc.StatusCode.NOT_FOUND:
                log.warning("kvstore lookup failed", extra={"code": exc.code().name})
            return None
        return response.entry.worker_id or None

    async def close(self) -> None:
        await self._channel.close()
