"""The operator's own configuration, read from its environment (set by the Helm chart)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata

from fastswitch_operator.spec import PULL_POLICIES, Images

# Set only to run against an API server without credentials (tests, `kubectl proxy`):
# a plain URL used with TLS verification off. In a cluster the service account is used.
API_SERVER_ENV = "FASTSWITCH_OPERATOR_API_SERVER"


def _version() -> str:
    try:
        return metadata.version("fastswitch")
    except metadata.PackageNotFoundError:
        return "latest"


@dataclass(frozen=True)
class OperatorConfig:
    default_images: Images
    api_server: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        env = os.environ if env is None else env
        tag = _version()
        pull_policy = env.get("FASTSWITCH_IMAGE_PULL_POLICY", "IfNotPresent")
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"FASTSWITCH_IMAGE_PULL_POLICY must be one of {PULL_POLICIES}")
        pull_secrets = env.get("FASTSWITCH_IMAGE_PULL_SECRETS", "")
        return cls(
            default_images=Images(
                worker=env.get("FASTSWITCH_WORKER_IMAGE", f"fastswitch/worker:{tag}"),
                frontend=env.get("FASTSWITCH_FRONTEND_IMAGE", f"fastswitch/frontend:{tag}"),
                scheduler=env.get("FASTSWITCH_SCHEDULER_IMAGE", f"fastswitch/scheduler:{tag}"),
                kvstore=env.get("FASTSWITCH_KVSTORE_IMAGE", f"fastswitch/kvstore:{tag}"),
                redis=env.get("FASTSWITCH_REDIS_IMAGE", "redis:7.4-alpine"),
                pull_policy=pull_policy,
                pull_secrets=tuple(s.strip() for s in pull_secrets.split(",") if s.strip()),
            ),
            api_server=env.get(API_SERVER_ENV) or None,
        )
