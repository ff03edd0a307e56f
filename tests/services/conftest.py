"""Fixtures for service tests: the real local stack (kvstore on real Redis, workers,
scheduler) on 127.0.0.1 ephemeral ports, in the test's event loop."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import grpc
import pytest

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2, kvstore_pb2_grpc, scheduler_pb2_grpc
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_stack.local_stack import local_stack
from fastswitch_worker.engine.config import EngineConfig

TENANTS = {"tokens": {"tok-a": "alice", "tok-b": "bob", "tok-admin": "ops"},
           "weights": {"alice": 1.0, "bob": 1.0}, "admins": ["ops"]}
ENGINE = dict(model="tiny", block_size=4, host_kv_bytes=16 << 20, max_num_batched_tokens=64,
              kv_cache_bytes=4 << 20)


@pytest.fixture
def engine_settings() -> dict:
    return dict(ENGINE)


@pytest.fixture
def stack_factory(redis_url):
    @asynccontextmanager
    async def make(*, num_workers: int = 1, engine: dict | None = None, **scheduler_settings):
        """Yields the LocalStack with `.stub`, a Scheduler client on its own channel."""
        scheduler = SchedulerConfig(listen="127.0.0.1:0", tick_ms=10, **scheduler_settings)
        async with local_stack(engine=EngineConfig(**{**ENGINE, **(engine or {})}),
                               scheduler=scheduler, num_workers=num_workers, redis_url=redis_url,
                               tenants=TENANTS, worker_drain_timeout_s=1.0) as stack:
            async with grpc.aio.insecure_channel(stack.address) as channel:
                stack.stub = scheduler_pb2_grpc.SchedulerStub(channel)
                yield stack
    return make


async def _until_published(stack, conversation_id: str,
                           within_s: float = 10.0) -> kvstore_pb2.KVEntry:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with transport.channel(stack.kvstore_address, stack.security) as channel:
        kv = kvstore_pb2_grpc.KVStoreStub(channel)
        while True:
            try:
                request = kvstore_pb2.LookupKVRequest(conversation_id=conversation_id)
                return (await kv.LookupKV(request, timeout=2)).entry
            except grpc.aio.AioRpcError:
                assert loop.time() < deadline, f"{conversation_id} was never published"
                await asyncio.sleep(0.02)


@pytest.fixture
def until_published():
    """`await until_published(stack, conversation_id)` polls the stack's kvstore until a worker
    has published the conversation's KV (the turn's KV reached host memory)."""
    return _until_published
