"""The kvstore's one configuration object; filled from CLI flags and env only in main."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastswitch import transport

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:50071"
DEFAULT_KEY_PREFIX = "fastswitch"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Key prefixes go into Redis keys and SCAN patterns: no glob characters, braces or spaces.
KEY_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]+")
REDIS_URL_SCHEMES = ("redis", "rediss", "unix")  # rediss: TLS


def redacted_url(url: str) -> str:
    """`url` fit to log or echo: any password replaced by ***, at most 200 characters."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            user = parts.username or ""
            host = parts.netloc.rpartition("@")[2]
            url = parts._replace(netloc=f"{user}:***@{host}").geturl()
    except ValueError:
        url = "<unparsable URL>"
    return url if len(url) <= 200 else url[:200] + "..."


@dataclass(frozen=True)
class KVStoreConfig:
    # host:port to serve gRPC on; port 0 picks a free one (tests).
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    # Redis to keep the index in: redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS. A
    # password in it never reaches logs, errors or repr. None starts a private embedded
    # valkey-server (`embedded_redis`; local use only: the index dies with this process).
    redis_url: str | None = field(default=None, repr=False)
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
        if self.redis_url is not None and (
            "://" not in self.redis_url
            or urlsplit(self.redis_url).scheme not in REDIS_URL_SCHEMES
        ):
            raise ValueError(
                "redis_url must be a URL like redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for "
                f"TLS), got {redacted_url(self.redis_url)!r}"
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
