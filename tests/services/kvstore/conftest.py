"""Fixtures for kvstore tests: a real kvstore gRPC server on the session's real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis

from fastswitch import transport
from fastswitch.v1 import kvstore_pb2_grpc
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_kvstore.redis_index import RedisKVIndex, connect
from fastswitch_kvstore.server import KVStoreServer

CLUSTER_TOKEN = "kvstore-test-cluster-token"


@pytest.fixture
def kvstore_config(redis_url: str, redis_client: redis.Redis) -> KVStoreConfig:
    """Config of a test kvstore on a flushed database: ephemeral port, fast health polling."""
    return KVStoreConfig(
        listen="127.0.0.1:0",
        redis_url=redis_url,
        health_check_interval_s=0.02,
        shutdown_grace_s=1.0,
        redis_timeout_s=1.0,
        security=transport.TransportSecurity(cluster_token=CLUSTER_TOKEN),
    )


@pytest.fixture
async def index(kvstore_config: KVStoreConfig) -> AsyncIterator[RedisKVIndex]:
    """The index on the flushed database, driven directly (no gRPC)."""
    kv_index = RedisKVIndex(
        connect(kvstore_config.redis_url, timeout_s=1.0), kvstore_config.key_prefix
    )
    yield kv_index
    await kv_index.close()


@pytest.fixture
async def kvstore_port(kvstore_config: KVStoreConfig) -> AsyncIterator[int]:
    """A running kvstore; yields its port."""
    server = KVStoreServer(kvstore_config)
    port = await server.start()
    yield port
    await server.stop(grace_s=0)


@pytest.fixture
async def stub(kvstore_port: int, kvstore_config: KVStoreConfig) -> AsyncIterator[kvstore_pb2_grpc.KVStoreStub]:
    """A client presenting the cluster credential, as the scheduler and workers do."""
    async with transport.channel(f"127.0.0.1:{kvstore_port}", kvstore_config.security) as channel:
        yield kvstore_pb2_grpc.KVStoreStub(channel)
