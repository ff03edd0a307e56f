"""Structured (one JSON object per line) logging for every service."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from fastswitch.settings import setting

LEVELS = ("debug", "info", "warning", "error", "critical")
_RESERVED = set(vars(logging.makeLogRecord({})))


class JsonFormatter(logging.Formatter):
    """Formats a record as JSON; `extra={...}` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": round(time.time(), 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in payload:
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure(level: str = "info", *, service: str) -> logging.Logger:
    """Route the root logger to stderr as JSON lines; returns the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return logging.getLogger(f"fastswitch.{service}")


def level_setting() -> Any:
    """The `log_level` field every service's config declares (FASTSWITCH_LOG_LEVEL)."""
    return setting("info", choices=LEVELS, parse=str.lower, help="log level")
