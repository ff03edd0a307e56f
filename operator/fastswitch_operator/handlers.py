"""kopf handlers: thin adapters from kopf's causes to `reconcile`.

Run with `kopf run --standalone --namespace=NS --liveness=http://0.0.0.0:8080/healthz
-m fastswitch_operator.handlers` (what the Helm chart does: one --namespace per namespace
served, or --all-namespaces when asked to serve the whole cluster).

- create / update / resume of a FastSwitchCluster: reconcile it; an invalid spec is a
  PermanentError (until the spec changes), waiting on the world a TemporaryError with backoff.
- any event of a Deployment or StatefulSet the operator manages: reconcile its owner again,
  which keeps the status true (workers ready vs desired) and restores deleted children.
Both write the status themselves (reconcile.sync), under one lock per cluster.
Deletion needs no handler: every child has an owner reference, the garbage collector removes
them, and no finalizer can leave a cluster stuck when the operator is gone.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import kopf

from fastswitch_operator import kube, names
from fastswitch_operator.config import OperatorConfig
from fastswitch_operator.reconcile import ClusterLocks, sync
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
    memo.locks = ClusterLocks()


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


@kopf.on.resume(*CLUSTERS)
@kopf.on.create(*CLUSTERS)
@kopf.on.update(*CLUSTERS)
def reconcile_cluster(namespace: str, name: str, memo: kopf.Memo, retry: int,
                      logger: logging.Logger, **_: Any) -> None:
    try:
        synced = sync(memo.api, memo.locks, namespace, name, memo.config.default_images, _now())
    except kube.KubeError as exc:
        raise kopf.TemporaryError(str(exc), delay=backoff_seconds(retry)) from exc
    if synced is None:
        return
    if isinstance(synced.error, InvalidSpecError):
        raise kopf.PermanentError(f"invalid spec: {synced.error}")
    if synced.error is not None:
        raise kopf.TemporaryError(str(synced.error), delay=backoff_seconds(retry))
    assert synced.outcome is not None
    changed = {child: action for child, action in synced.outcome.actions.items()
               if action != "unchanged"}
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
        sync(memo.api, memo.locks, namespace, owner, memo.config.default_images, _now())
    except kube.KubeError as exc:
        # The next event (or the owner's own handler) tries again.
        logger.warning("Cannot refresh FastSwitchCluster %s/%s: %s", namespace, owner, exc)
