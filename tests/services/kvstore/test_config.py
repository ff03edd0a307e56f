"""KVStoreConfig refuses what the service could not run with."""

from __future__ import annotations

import pytest

from fastswitch_kvstore.config import KVStoreConfig


def test_defaults_are_valid_and_use_the_kvstore_port() -> None:
    config = KVStoreConfig()
    assert config.listen_address == "0.0.0.0:50071"
    assert config.redis_url is None  # embedded Redis
    assert config.key_prefix == "fastswitch"


@pytest.mark.parametrize(
    "overrides",
    [
        {"listen_address": "50071"},
        {"listen_address": "127.0.0.1:"},
        {"listen_address": "127.0.0.1:99999"},
        {"redis_url": "localhost:6379"},
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
    assert KVStoreConfig(listen_address="[::]:50071").listen_address == "[::]:50071"
