"""One reconcile of a FastSwitchCluster: validate, wait for what the spec refers to, create the
generated Secrets, apply its children, prune, compute status.

Level-triggered: it reads the whole resource, never a diff, so the kopf handlers (create,
update, resume) and the child-event handler can all call it, in any order, any number of times.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf

from fastswitch_operator import names, status
from fastswitch_operator.build_secrets import build_secrets, secret_problem
from fastswitch_operator.build_transport import TLS_CA, TLS_CERT, TLS_KEY
from fastswitch_operator.children import CHILD_KINDS, build_children, workload_names
from fastswitch_operator.kube import KubeApi, NotOwnedError
from fastswitch_operator.spec import ClusterSpec, Images, InvalidSpecError, parse_spec


class WaitingError(Exception):
    """The spec is fine but the world is not ready for it yet (retry later)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Outcome:
    status: dict[str, Any]
    actions: dict[str, str]  # "Kind/name" -> created | patched | unchanged | deleted

    @property
    def is_ready(self) -> bool:
        return status.is_ready(self.status)


class ClusterLocks:
    """One lock per cluster: its reconciles (kopf's handler, child events) never overlap."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: defaultdict[tuple[str, str], threading.Lock] = defaultdict(threading.Lock)

    def of(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks[namespace, name]


@dataclass(frozen=True)
class Synced:
    outcome: Outcome | None  # None when the spec was not applied
    error: Exception | None  # InvalidSpecError, WaitingError or NotOwnedError


def sync(api: KubeApi, locks: ClusterLocks, namespace: str, name: str, default_images: Images,
         now: str) -> Synced | None:
    """Reconcile the cluster as it is now and write its status; None if it is gone.

    Spec and waiting errors are returned (and explained in the status); kube.KubeError raises.
    """
    with locks.of(namespace, name):
        body = api.get_cluster(namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        previous = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        outcome: Outcome | None = None
        error: Exception | None = None
        try:
            outcome = reconcile(api, body, default_images, now)
            new_status = outcome.status
        except InvalidSpecError as exc:
            error, new_status = exc, status.not_applied_status(
                generation=generation, phase=status.FAILED, reason="InvalidSpec",
                message=f"invalid spec: {exc}", previous=previous, now=now)
        except (WaitingError, NotOwnedError) as exc:
            waiting = isinstance(exc, WaitingError)
            error, new_status = exc, status.not_applied_status(
                generation=generation, phase=status.PENDING if waiting else status.FAILED,
                reason=exc.reason if isinstance(exc, WaitingError) else "NameConflict",
                message=str(exc), previous=previous, now=now)
        changes = status.changes(previous, new_status)
        if changes:
            api.patch_cluster_status(namespace, name, changes)
        return Synced(outcome, error)


def reconcile(api: KubeApi, body: Mapping[str, Any], default_images: Images, now: str) -> Outcome:
    """Make the children match the spec and return the status to write.

    Raises spec.InvalidSpecError for a spec that cannot be deployed and WaitingError for one
    that cannot be deployed yet (nothing is written in both cases), kube.KubeError (or its
    NotOwnedError) when the API refuses.
    """
    meta = body["metadata"]
    cluster = parse_spec(meta["name"], meta["namespace"], body.get("spec") or {}, default_images)
    claim = cluster.model.pvc_claim_name
    if claim is not None and api.get("v1", "PersistentVolumeClaim", cluster.namespace, claim) is None:
        raise WaitingError("WaitingForVolume",
                           f"waiting for PersistentVolumeClaim {claim} (spec.model.pvc)")
    check_tls_secret(api, cluster)
    actions: dict[str, str] = {}
    secret_versions = ensure_secrets(api, cluster, body, actions)
    desired = build_children(cluster, secret_versions)
    kopf.adopt(desired, owner=dict(body))
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for child in desired:
        applied = api.apply(child, owner_uid=meta["uid"])
        actions[f"{child['kind']}/{child['metadata']['name']}"] = applied.action
        live[(child["kind"], child["metadata"]["name"])] = applied.live
    for kind, name in prune(api, cluster, meta["uid"], desired):
        actions[f"{kind}/{name}"] = "deleted"
    new_status = status.build_status(
        cluster_name=cluster.name,
        namespace=cluster.namespace,
        generation=int(meta.get("generation") or 0),
        desired_workers=cluster.workers.replicas,
        states=_states(cluster, live),
        previous=body.get("status") or {},
        now=now,
    )
    return Outcome(new_status, actions)


def check_tls_secret(api: KubeApi, cluster: ClusterSpec) -> None:
    """Raise WaitingError until spec.tls's Secret exists with every file the pods use (an
    issuer that writes no ca.crt cannot serve: the services verify each other with it)."""
    if cluster.tls is None:
        return
    name = cluster.tls.secret_name
    secret = api.get("v1", "Secret", cluster.namespace, name)
    if secret is None:
        raise WaitingError("WaitingForTLSSecret", f"waiting for Secret {name} (spec.tls.secretName)")
    missing = [key for key in (TLS_CERT, TLS_KEY, TLS_CA) if key not in (secret.get("data") or {})]
    if missing:
        raise WaitingError("WaitingForTLSSecret",
                           f"Secret {name} (spec.tls.secretName) has no {', '.join(missing)}")


def ensure_secrets(api: KubeApi, cluster: ClusterSpec, body: Mapping[str, Any],
                   actions: dict[str, str]) -> dict[str, str]:
    """Create the generated Secrets that are missing (adopted, so they go with the cluster);
    never change an existing one. Returns each one's resourceVersion by name and records what
    was done in `actions`. Raises WaitingError when an existing one cannot be used."""
    generated = build_secrets(cluster)
    kopf.adopt(generated, owner=dict(body))
    versions = {}
    for secret in generated:
        applied = api.create_if_absent(secret)
        name = secret["metadata"]["name"]
        problem = secret_problem(secret, applied.live)
        if problem is not None:
            raise WaitingError("InvalidSecret", f"{problem} (delete it to have one generated)")
        actions[f"Secret/{name}"] = applied.action
        versions[name] = str(applied.live["metadata"].get("resourceVersion", ""))
    return versions


def prune(api: KubeApi, cluster: ClusterSpec, owner_uid: str,
          desired: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Delete children this cluster owns but no longer wants (e.g. its Redis, once an
    external one is configured)."""
    wanted = {(c["kind"], c["metadata"]["name"]) for c in desired}
    selector = (f"app.kubernetes.io/instance={cluster.name},"
                f"app.kubernetes.io/managed-by={names.MANAGED_BY}")
    deleted = []
    for api_version, kind in CHILD_KINDS:
        for obj in api.list(api_version, kind, cluster.namespace, selector):
            name = obj["metadata"]["name"]
            owned = any(ref.get("uid") == owner_uid
                        for ref in obj["metadata"].get("ownerReferences") or [])
            if owned and (kind, name) not in wanted:
                api.delete(api_version, kind, cluster.namespace, name)
                deleted.append((kind, name))
    return deleted


def _states(cluster: ClusterSpec, live: Mapping[tuple[str, str], Mapping[str, Any]]
            ) -> dict[str, status.WorkloadState]:
    components = [names.WORKER, names.FRONTEND, names.SCHEDULER, names.KVSTORE]
    if cluster.kvstore.is_redis_managed:
        components.append(names.REDIS)
    workloads = workload_names(cluster.name)
    return {c: status.WorkloadState.of(live.get(workloads[c])) for c in components}
