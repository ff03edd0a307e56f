"""KVStoreConfig: the kvstore service's settings, each declared once (flag, environment
variable, default, help: fastswitch.settings); filled from CLI/env in main only."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastswitch import logs, transport
from fastswitch.metrics_http import check_metrics_port, metrics_port_setting
from fastswitch.settings import setting

DEFAULT_LISTEN_ADDRESS = "0.0.0.0:50071"
DEFAULT_KEY_PREFIX = "fastswitch"
DEFAULT_METRICS_PORT = 9403  # frontend 9400, scheduler 9401, worker 9402, kvstore 9403
# The first one set wins. REDIS_URL is what the operator sets (from a Secret when the URL holds
# a password: never put one on a command line).
REDIS_URL_ENVS = ("FASTSWITCH_REDIS_URL", "REDIS_URL")
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
    listen: str = setting(DEFAULT_LISTEN_ADDRESS, env="FASTSWITCH_KVSTORE_LISTEN",
                          metavar="HOST:PORT", help="gRPC address to serve on")
    # A password in the URL never reaches logs, errors or repr, nor a child's command line.
    redis_url: str | None = setting(
        None, env=REDIS_URL_ENVS, metavar="URL", secret=True,
        default_text="a private embedded valkey-server that dies with this process (local use "
                     "only: the index dies with it)",
        help="Redis holding the index: redis://[:PASSWORD@]HOST:PORT/DB, rediss:// for TLS")
    key_prefix: str = setting(DEFAULT_KEY_PREFIX, env="FASTSWITCH_KVSTORE_KEY_PREFIX", help=(
        "prefix of every Redis key, so several clusters can share one Redis"))
    log_level: str = logs.level_setting()
    shutdown_grace_s: float = setting(5.0, help=(
        "seconds in-flight calls may take to finish once a stop is requested"))
    health_check_interval_s: float = setting(1.0, help=(
        "seconds between pings of Redis that keep grpc.health.v1 current"))
    redis_timeout_s: float = setting(2.0, help=(
        "connect and read timeout of one Redis command: a dead Redis fails calls this fast"))
    metrics_port: int = metrics_port_setting(DEFAULT_METRICS_PORT)
    # TLS files and the cluster credential every caller (scheduler, workers) must present.
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)

    def __post_init__(self) -> None:
        check_metrics_port(self.metrics_port)
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"listen must be HOST:PORT, got {self.listen!r}")
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
        if self.log_level.lower() not in logs.LEVELS:
            raise ValueError(f"log_level must be one of {logs.LEVELS}, got {self.log_level!r}")
        for name in ("shutdown_grace_s", "health_check_interval_s", "redis_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
