"""KVStoreConfig refuses what the service could not run with."""

from __future__ import annotations

import pytest

from fastswitch_kvstore.config import KVStoreConfig, redacted_url


def test_defaults_are_valid_and_use_the_kvstore_port() -> None:
    config = KVStoreConfig()
    assert config.listen == "0.0.0.0:50071"
    assert config.redis_url is None  # embedded Redis
    assert config.key_prefix == "fastswitch"


@pytest.mark.parametrize(
    "overrides",
    [
        {"listen": "50071"},
        {"listen": "127.0.0.1:"},
        {"listen": "127.0.0.1:99999"},
        {"redis_url": "localhost:6379"},
        {"redis_url": "http://localhost:6379/0"},
        {"key_prefix": ""},
        {"key_prefix": "has space"},
        {"key_prefix": "glob*"},
        {"log_level": "loud"},
        {"shutdown_grace_s": 0},
        {"health_check_interval_s": -1},
        {"redis_timeout_s": 0},
    ],
)
def test_invalid_values_are_refused(overrides) -> None:
    with pytest.raises(ValueError):
        KVStoreConfig(**overrides)


def test_ipv6_listen_address_is_accepted() -> None:
    assert KVStoreConfig(listen="[::]:50071").listen == "[::]:50071"


@pytest.mark.parametrize(
    "url", ["redis://:pw@127.0.0.1:6379/0", "rediss://user:pw@redis.example:6380/1",
            "unix:///run/redis.sock"],
)
def test_redis_urls_with_password_tls_or_socket_are_accepted(url: str) -> None:
    assert KVStoreConfig(redis_url=url).redis_url == url


def test_a_redis_password_stays_out_of_errors_and_repr() -> None:
    with pytest.raises(ValueError) as exc:
        KVStoreConfig(redis_url="http://:hunter2-secret@host:1/0")
    assert "hunter2-secret" not in str(exc.value)
    assert ":***@host:1" in str(exc.value)
    assert "hunter2-secret" not in repr(KVStoreConfig(redis_url="redis://:hunter2-secret@h:1/0"))
    assert redacted_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redacted_url("redis://h:1/0") == "redis://h:1/0"
