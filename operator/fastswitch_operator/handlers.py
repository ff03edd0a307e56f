"""kopf handlers: thin adapters from kopf's causes to `reconcile`.

Run with `kopf run --standalone --all-namespaces --liveness=http://0.0.0.0:8080/healthz
-m fastswitch_operator.handlers` (what the Helm chart does).

- create / update / resume of a FastSwitchCluster: reconcile it; an invalid spec is a
  PermanentError (until the spec changes), waiting on the world a TemporaryError with backoff.
- any event of a Deployment or StatefulSet the operator manages: reconcile its owner again,
  which keeps the status true (workers ready vs desired) and restores deleted children.
Deletion needs no handler: every child has an owner reference, the garbage collector removes
them, and no finalizer can leave a cluster stuck when the operator is gone.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from fastswitch_operator import kube, names, status
from fastswitch_operator.config import OperatorConfig
from fastswitch_operator.reconcile import Outcome, WaitingError, reconcile
from fastswitch_operator.spec import InvalidSpecError

CLUSTERS = (names.GROUP, names.VERSION, names.PLURAL)
MANAGED = {"app.kubernetes.io/managed-by": names.MANAGED_BY}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backoff_seconds(retry: int) -> float:
    """10 s, 20 s, 40 s ... at most a minute between tries."""
    return float(min(10 * 2 ** min(retry, 6), 60))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Keep kopf's bookkeeping in annotations of our own group; status stays ours alone.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=names.GROUP, key="last-handled-configuration"
    )
    # No cluster-wide discovery of CRDs and namespaces: the RBAC does not grant it.
    settings.scanning.disabled = True
    settings.posting.level = logging.WARNING
    memo.config = OperatorConfig.from_env()
    memo.api = kube.KubeApi.connect(memo.config.api_server)


@kopf.on.cleanup()
def close(memo: kopf.Memo, **_: Any) -> None:
    if "api" in memo:
        memo.api.close()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    api_server = OperatorConfig.from_env().api_server
    if api_server:
        return kopf.ConnectionInfo(server=api_server, insecure=True)
    return kopf.login_via_client(**kwargs)


def _reconcile_or_status(api: kube.KubeApi, body: Mapping[str, Any], config: OperatorConfig,
                         ) -> tuple[Outcome | None, dict[str, Any], Exception | None]:
    """Reconcile; on failure, the status that explains it and the error to surface."""
    now = _now()
    generation = int(body["metadata"].get("generation") or 0)
    previous = body.get("status") or {}
    try:
        outcome = reconcile(api, body, config.default_images, now)
    except InvalidSpecError as exc:
        failed = status.not_applied_status(
            generation=generation, phase=status.FAILED, reason="InvalidSpec",
            message=f"invalid spec: {exc}", previous=previous, now=now)
        return None, failed, kopf.PermanentError(f"invalid spec: {exc}")
    except (WaitingError, kube.NotOwnedError) as exc:
        reason = exc.reason if isinstance(exc, WaitingError) else "NameConflict"
        phase = status.PENDING if isinstance(exc, WaitingError) else status.FAILED
        waiting = status.not_applied_status(
            generation=generation, phase=phase, reason=reason, message=str(exc),
            previous=previous, now=now)
        return None, waiting, exc
    return outcome, outcome.status, None


@kopf.on.resume(*CLUSTERS)
@kopf.on.create(*CLUSTERS)
@kopf.on.update(*CLUSTERS)
def reconcile_cluster(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int,
                      logger: logging.Logger, **_: Any) -> None:
    try:
        outcome, new_status, error = _reconcile_or_status(memo.api, body, memo.config)
    except kube.KubeError as exc:
        raise kopf.TemporaryError(str(exc), delay=backoff_seconds(retry)) from exc
    patch.status.update(status.changes(body.get("status"), new_status))
    if isinstance(error, kopf.PermanentError):
        raise error
    if error is not None:
        raise kopf.TemporaryError(str(error), delay=backoff_seconds(retry)) from error
    assert outcome is not None
    changed = {child: action for child, action in outcome.actions.items() if action != "unchanged"}
    if changed:
        logger.info("Applied: %s", ", ".join(f"{c} {a}" for c, a in sorted(changed.items())))


@kopf.on.event("apps", "v1", "statefulsets", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
def on_child_event(body: kopf.Body, namespace: str, memo: kopf.Memo,
                   logger: logging.Logger, **_: Any) -> None:
    owner = kube.owner_name(body)
    if owner is None:
        return
    try:
        cluster = memo.api.get_cluster(namespace, owner)
        if cluster is None or cluster["metadata"].get("deletionTimestamp"):
            return
        _, new_status, _ = _reconcile_or_status(memo.api, cluster, memo.config)
        changes = status.changes(cluster.get("status"), new_status)
        if changes:
            memo.api.patch_cluster_status(namespace, owner, changes)
    except kube.KubeError as exc:
        # The next event (or the owner's own handler) tries again.
        logger.warning("Cannot refresh FastSwitchCluster %s/%s: %s", namespace, owner, exc)
