"""The worker's only link to the kvstore: register, publish and evict conversation KV.

Best effort: the kvstore being down costs routing quality (a next turn may land elsewhere and
recompute), never a request, so failures are logged and swallowed.
"""

from __future__ import annotations

import logging
import time
import uuid

import grpc

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc, worker_pb2

log = logging.getLogger("fastswitch.worker.kvstore")
RPC_TIMEOUT_S = 2.0


class KVStoreClient:
    def __init__(self, address: str, worker_id: str, advertise_address: str,
                 security: transport.TransportSecurity) -> None:
        self.worker_id = worker_id
        self.advertise_address = advertise_address
        self.incarnation = uuid.uuid4().hex
        self._channel = transport.channel(address, security)
        self._stub = kvstore_pb2_grpc.KVStoreStub(self._channel)
        self.capacity_bytes = 1
        self.is_registered = False

    async def register(self, capacity_bytes: int) -> bool:
        """Announce this incarnation (drops entries of a previous one). Retried by publish()
        when the kvstore was not reachable yet or lost the registration."""
        self.capacity_bytes = max(1, capacity_bytes)
        try:
            response = await self._stub.RegisterWorker(kvstore_pb2.RegisterWorkerRequest(
                worker_id=self.worker_id, incarnation=self.incarnation,
                capacity_bytes=self.capacity_bytes, address=self.advertise_address),
                timeout=RPC_TIMEOUT_S)
            log.info("registered with kvstore", extra={"dropped": response.num_dropped_entries})
            self.is_registered = True
        except grpc.aio.AioRpcError as exc:
            log.warning("kvstore register failed", extra={"code": exc.code().name})
            self.is_registered = False
        return self.is_registered

    async def publish(self, entry: worker_pb2.KVPublish) -> list[str]:
        """Returns the conversations the kvstore asks this worker to evict (LRU)."""
        request = kvstore_pb2.PublishKVRequest(entry=kvstore_pb2.KVEntry(
            conversation_id=entry.conversation_id, worker_id=self.worker_id,
            num_tokens=entry.num_tokens, prefix_hash=entry.prefix_hash,
            num_bytes=entry.num_bytes, last_used_unix_ms=int(time.time() * 1e3)))
        for attempt in range(2):
            if not self.is_registered and not await self.register(self.capacity_bytes):
                return []
            try:
                response = await self._stub.PublishKV(request, timeout=RPC_TIMEOUT_S)
                return list(response.evict_conversation_ids)
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.FAILED_PRECONDITION and attempt == 0:
                    self.is_registered = False  # the kvstore forgot us: register, try again
                    continue
                log.warning("kvstore publish failed", extra={"code": exc.code().name})
                return []
        return []

    async def evict(self, conversation_id: str) -> None:
        try:
            await self._stub.EvictKV(kvstore_pb2.EvictKVRequest(
                conversation_id=conversation_id, worker_id=self.worker_id), timeout=RPC_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            log.warning("kvstore evict failed", extra={"code": exc.code().name})

    async def close(self) -> None:
        await self._channel.close()
