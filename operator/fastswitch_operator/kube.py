"""The operator's only door to the Kubernetes API (besides kopf's own watching).

Synchronous (the official client's dynamic client); kopf runs the handlers that call it in
worker threads. Objects go in and come out as plain dicts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError, DynamicApiError, NotFoundError

from fastswitch_operator import names, patching
from fastswitch_operator.children import CHILD_KINDS

MERGE_PATCH = "application/merge-patch+json"


class KubeError(RuntimeError):
    """The API server refused or failed a request; usually worth retrying later."""


class NotOwnedError(KubeError):
    """A child's name is taken by an object this cluster does not own."""


@dataclass(frozen=True)
class Applied:
    action: str  # "created", "patched" or "unchanged"
    live: dict[str, Any]


def api_configuration(api_server: str | None) -> client.Configuration:
    """Credentials: the given URL without any (tests, `kubectl proxy`), else the pod's service
    account, else the local kubeconfig - the same order kopf's own login follows."""
    configuration = client.Configuration()
    if api_server:
        configuration.host = api_server.rstrip("/")
        configuration.verify_ssl = False
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def _owned_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(ref.get("uid") == owner_uid for ref in refs)


def owner_name(obj: Mapping[str, Any]) -> str | None:
    """The FastSwitchCluster controlling a child, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("apiVersion") == names.API_VERSION and ref.get("kind") == names.KIND:
            return ref.get("name")
    return None


class KubeApi:
    """Create-or-patch, read, delete and status writes, with dicts in and out."""

    def __init__(self, configuration: client.Configuration) -> None:
        self._api_client = client.ApiClient(configuration)
        # A private discovery cache: a shared one in /tmp can be stale or unwritable.
        self._cache_dir = tempfile.TemporaryDirectory(prefix="fastswitch-operator-")
        cache_file = os.path.join(self._cache_dir.name, "discovery.json")
        self._dynamic = DynamicClient(self._api_client, cache_file=cache_file)
        self._resources: dict[tuple[str, str], Any] = {}
        # Resolve every kind up front: discovery is not safe to run from several threads.
        kinds = ((names.API_VERSION, names.KIND), ("v1", "PersistentVolumeClaim"), ("v1", "Secret"),
                 *CHILD_KINDS)
        for api_version, kind in kinds:
            self._resource(api_version, kind)

    @classmethod
    def connect(cls, api_server: str | None) -> KubeApi:
        return cls(api_configuration(api_server))

    def close(self) -> None:
        self._api_client.close()
        self._cache_dir.cleanup()

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self._dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = self._resource(api_version, kind).get(name=name, namespace=namespace)
        except NotFoundError:
            return None
        except DynamicApiError as exc:
            raise KubeError(f"cannot read {kind} {namespace}/{name}: {exc.reason}") from exc
        return found.to_dict()

    def list(self, api_version: str, kind: str, namespace: str,
             label_selector: str) -> list[dict[str, Any]]:
        try:
            found = self._resource(api_version, kind).get(
                namespace=namespace, label_selector=label_selector
            )
        except DynamicApiError as exc:
            raise KubeError(f"cannot list {kind} in {namespace}: {exc.reason}") from exc
        return list(found.to_dict().get("items") or [])

    def apply(self, desired: Mapping[str, Any], owner_uid: str) -> Applied:
        """Create-or-patch one child; writes nothing when the live object already matches.

        Raises NotOwnedError when the name is taken by an object `owner_uid` does not own.
        """
        desired = patching.with_last_applied(desired)
        api_version, kind = desired["apiVersion"], desired["kind"]
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        resource = self._resource(api_version, kind)
        live = self.get(api_version, kind, namespace, name)
        if live is None:
            try:
                return Applied("created", resource.create(body=desired, namespace=namespace).to_dict())
            except ConflictError:  # created meanwhile (another reconcile): patch it instead
                live = self.get(api_version, kind, namespace, name)
            except DynamicApiError as exc:
                raise KubeError(f"cannot create {kind} {namespace}/{name}: {exc.reason}") from exc
            if live is None:
                raise KubeError(f"{kind} {namespace}/{name} vanished while being created")
        if not _owned_by(live, owner_uid):
            raise NotOwnedError(f"{kind} {namespace}/{name} exists and is not owned by this cluster")
        patch = patching.plan_patch(live, desired)
        if patch is None:
            return Applied("unchanged", live)
        try:
            patched = resource.patch(body=patch, name=name, namespace=namespace,
                                     content_type=MERGE_PATCH)
        except DynamicApiError as exc:
            raise KubeError(f"cannot patch {kind} {namespace}/{name}: {exc.reason}") from exc
        return Applied("patched", patched.to_dict())

    def create_if_absent(self, desired: Mapping[str, Any]) -> Applied:
        """Create an object unless one of that name exists; never changes an existing one.

        For generated Secrets: their values are made once, and no copy of them goes into a
        last-applied annotation. Returns "created" or "unchanged" with the live object.
        """
        api_version, kind = desired["apiVersion"], desired["kind"]
        namespace, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        live = self.get(api_version, kind, namespace, name)
        if live is not None:
            return Applied("unchanged", live)
        try:
            created = self._resource(api_version, kind).create(body=dict(desired),
                                                               namespace=namespace)
        except ConflictError:  # created meanwhile: keep that one
            live = self.get(api_version, kind, namespace, name)
            if live is None:
                raise KubeError(f"{kind} {namespace}/{name} vanished while being created") from None
            return Applied("unchanged", live)
        except DynamicApiError as exc:
            raise KubeError(f"cannot create {kind} {namespace}/{name}: {exc.reason}") from exc
        return Applied("created", created.to_dict())

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete an object (its own children go by garbage collection); False if absent."""
        try:
            self._resource(api_version, kind).delete(
                name=name, namespace=namespace, body={"propagationPolicy": "Background"}
            )
        except NotFoundError:
            return False
        except DynamicApiError as exc:
            raise KubeError(f"cannot delete {kind} {namespace}/{name}: {exc.reason}") from exc
        return True

    def get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(names.API_VERSION, names.KIND, namespace, name)

    def patch_cluster_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge `status` into a FastSwitchCluster's status subresource."""
        resource = self._resource(names.API_VERSION, names.KIND)
        try:
            resource.status.patch(body={"status": dict(status)}, name=name, namespace=namespace,
                                  content_type=MERGE_PATCH)
        except NotFoundError:
            return  # deleted meanwhile: nothing to report on
        except DynamicApiError as exc:
            raise KubeError(f"cannot update the status of {namespace}/{name}: {exc.reason}") from exc
