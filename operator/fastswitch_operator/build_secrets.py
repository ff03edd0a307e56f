"""The Secrets the operator generates for a cluster, and how pods use them.

- `<cluster>-cluster-token`: the credential the frontends, scheduler, workers and kvstore
  present to each other (`authorization: Bearer <token>`); the scheduler, workers and kvstore
  refuse calls without it (health checks aside). Clients never see it: the frontends
  authenticate them with their own tokens.
- `<cluster>-redis`: the password of the Redis the operator runs (only when it runs one).

Each is created once with a random value and never overwritten (`reconcile` creates what is
missing and leaves an existing one alone, so a Secret created beforehand is used as is). Pods
read them through `secretKeyRef`, so a value never appears in a pod spec. Pod templates carry
the resourceVersion of the generated Secrets they use: a Secret deleted (then re-generated) or
edited rolls exactly the pods that read it, since a process never rereads its environment.
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from fastswitch_operator import names, pods
from fastswitch_operator.spec import ClusterSpec

# The variable `fastswitch frontend|scheduler|worker|kvstore` read the cluster credential from
# (fastswitch.transport.CLUSTER_TOKEN_ENV; the operator's image has no gRPC to import it from).
CLUSTER_TOKEN_ENV = "FASTSWITCH_CLUSTER_TOKEN"
CLUSTER_TOKEN_KEY = "token"
REDIS_PASSWORD_ENV = "REDIS_PASSWORD"
REDIS_PASSWORD_KEY = "password"
SECRET_VERSIONS_ANNOTATION = "fastswitch.io/secret-versions"
# What the services accept as a token (at least 16 printable characters, no spaces), and a
# password that can go into a redis:// URL unescaped (RFC 3986 unreserved characters).
_RULES = {
    CLUSTER_TOKEN_KEY: (re.compile(r"^[!-~]{16,}$"),
                        "at least 16 printable characters without spaces"),
    REDIS_PASSWORD_KEY: (re.compile(r"^[A-Za-z0-9._~-]{16,}$"),
                         "at least 16 URL-safe characters (A-Z a-z 0-9 . _ ~ -)"),
}


def new_secret_value() -> str:
    """A random credential: 32 bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def _secret(cluster: ClusterSpec, name: str, component: str, key: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": pods.object_meta(cluster, name, component),
        "type": "Opaque",
        # Never edited in place: rotating is deleting it (the operator makes a new one).
        "immutable": True,
        "data": {key: base64.b64encode(value.encode()).decode()},
    }


def build_cluster_token_secret(cluster: ClusterSpec, token: str) -> dict[str, Any]:
    return _secret(cluster, names.cluster_token_name(cluster.name), names.CREDENTIALS,
                   CLUSTER_TOKEN_KEY, token)


def build_redis_password_secret(cluster: ClusterSpec, password: str) -> dict[str, Any]:
    return _secret(cluster, names.redis_password_name(cluster.name), names.REDIS,
                   REDIS_PASSWORD_KEY, password)


def build_secrets(cluster: ClusterSpec,
                  new_value: Callable[[], str] = new_secret_value) -> list[dict[str, Any]]:
    """The Secrets a cluster needs, each with a fresh value (used only if it is absent)."""
    built = [build_cluster_token_secret(cluster, new_value())]
    if cluster.kvstore.is_redis_managed:
        built.append(build_redis_password_secret(cluster, new_value()))
    return built


def secret_problem(desired: Mapping[str, Any], live: Mapping[str, Any]) -> str | None:
    """Why the existing Secret `live` (perhaps created by a user) cannot stand in for the
    `desired` one, or None when it can."""
    name = live["metadata"]["name"]
    (key,) = desired["data"]
    pattern, rule = _RULES[key]
    encoded = (live.get("data") or {}).get(key)
    if encoded is None:
        return f"Secret {name} has no key {key!r}"
    try:
        value = base64.b64decode(encoded, validate=True).decode()
    except ValueError:
        return f"Secret {name}: {key!r} is not valid base64 text"
    if not pattern.match(value.strip()):
        return f"Secret {name}: {key!r} must be {rule}"
    return None


def cluster_token_env(cluster: ClusterSpec) -> dict[str, Any]:
    ref = {"name": names.cluster_token_name(cluster.name), "key": CLUSTER_TOKEN_KEY}
    return {"name": CLUSTER_TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}}


def redis_password_env(cluster: ClusterSpec) -> dict[str, Any]:
    ref = {"name": names.redis_password_name(cluster.name), "key": REDIS_PASSWORD_KEY}
    return {"name": REDIS_PASSWORD_ENV, "valueFrom": {"secretKeyRef": ref}}


def _referenced_secrets(pod_spec: Mapping[str, Any]) -> set[str]:
    return {
        env["valueFrom"]["secretKeyRef"]["name"]
        for container in pod_spec.get("containers", [])
        for env in container.get("env", [])
        if "secretKeyRef" in (env.get("valueFrom") or {})
    }


def with_secret_versions(children: list[dict[str, Any]],
                         versions: Mapping[str, str]) -> list[dict[str, Any]]:
    """Copies of `children` whose pod templates carry the versions (Secret name ->
    resourceVersion) of the generated Secrets their containers read."""
    stamped = []
    for child in children:
        template = child.get("spec", {}).get("template")
        used = sorted(_referenced_secrets(template["spec"]) & versions.keys()) if template else []
        if used:
            child = copy.deepcopy(child)
            annotations = child["spec"]["template"]["metadata"].setdefault("annotations", {})
            annotations[SECRET_VERSIONS_ANNOTATION] = ",".join(
                f"{name}={versions[name]}" for name in used)
        stamped.append(child)
    return stamped
