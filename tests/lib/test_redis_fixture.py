"""The session Redis fixture is a real server that round-trips data."""

from __future__ import annotations

import redis


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    redis_client.hset("fastswitch:test:h", mapping={"a": "1", "b": "two"})
    redis_client.zadd("fastswitch:test:z", {"x": 2.0, "y": 1.0})
    assert redis_client.hgetall("fastswitch:test:h") == {"a": "1", "b": "two"}
    assert redis_client.zrange("fastswitch:test:z", 0, -1) == ["y", "x"]


def test_each_test_starts_with_an_empty_database(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
