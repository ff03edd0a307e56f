"""A Kubernetes API for the operator tests: kmock's emulator, filled in where the operator
relies on the real API server's behaviour, and the CRD exactly as the Helm chart ships it."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp.web
import helm_python as helm
import kmock
import kopf.testing
import pytest
import yaml
from kubernetes import client

from fastswitch_operator import names
from fastswitch_operator.config import API_SERVER_ENV

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "fastswitch"
NAMESPACE = "team-a"
CLUSTER_RESOURCE = {"group": names.GROUP, "version": names.VERSION, "plural": names.PLURAL}


def chart_crds() -> list[dict[str, Any]]:
    """The CRDs of the chart, as Helm loads them (so tests use what `helm install` installs)."""
    with helm.Chart.load(CHART_DIR) as chart:
        return [yaml.safe_load(crd["data"]) for crd in chart.crds]


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(base) if isinstance(base, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


def _path(json_path: str) -> list[str]:
    return json_path.lstrip(".").split(".")


def _dig(obj: Mapping[str, Any], path: list[str]) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


class ApiServer(kmock.KubernetesEmulator):
    """kmock's emulator plus what a real API server does that the operator depends on.

    - metadata.uid / resourceVersion / generation / creationTimestamp are stamped; generation
      moves only when spec changes (as for resources with a status subresource);
    - a resource with a status subresource ignores status on the main endpoint, and its
      /status endpoint changes only status;
    - the scale subresource maps to the paths the CRD declares (kubectl scale, HPA);
    - lists carry their kind and honour equality label selectors;
    - objects whose owners are all gone are deleted (the garbage collector), also when they
      are created after their owner went.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._scales: dict[kmock.resource, dict[str, str]] = {}
        self._versions = itertools.count(1)

    def register_crd(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        for version in spec["versions"]:
            key = f"{spec['group']}/{version['name']}/{spec['names']['plural']}"
            self.resources[key] = kmock.ResourceInfo(
                kind=spec["names"]["kind"],
                singular=spec["names"]["singular"],
                namespaced=spec["scope"] == "Namespaced",
                shortnames=set(spec["names"].get("shortNames", [])),
                verbs={"get", "list", "watch", "create", "patch", "update", "delete"},
                subresources=set(version.get("subresources", {})),
            )
            if "scale" in version.get("subresources", {}):
                self._scales[kmock.resource(key)] = version["subresources"]["scale"]

    def live(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object as stored now (e.g. live("apps/v1/statefulsets", ns, name)), or None."""
        key = (kmock.resource(resource), namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def writes(self, resource: str | None = None) -> list[kmock.Request]:
        """Requests so far that created, changed or deleted objects (of one resource)."""
        kinds = (kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE)
        wanted = None if resource is None else kmock.resource(resource)
        return [r for r in list(self) if r.action in kinds and r.resource is not None
                and (wanted is None or r.resource == wanted)]

    async def create(self, obj: Mapping[str, Any]) -> None:
        """Create an object as a user would (e.g. a Service that takes a child's name)."""
        group_version, plural = obj["apiVersion"], obj["kind"].lower() + "s"
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{prefix}/namespaces/{obj['metadata']['namespace']}/{plural}"
        async with self.post(path, json=obj) as response:
            assert response.status == 201, await response.text()

    async def settle_workloads(self, namespace: str, *, ready_workers: int | None = None) -> None:
        """Play the Deployment and StatefulSet controllers (kmock runs none): every workload in
        `namespace` reports its replicas updated and ready (StatefulSets: `ready_workers`)."""
        for resource in ("apps/v1/deployments", "apps/v1/statefulsets"):
            for (res, ns, name), obj in list(self.objects.items()):
                if res != kmock.resource(resource) or ns != namespace or obj.deleted:
                    continue
                replicas = obj.raw["spec"].get("replicas", 1)
                ready = replicas
                if resource.endswith("statefulsets") and ready_workers is not None:
                    ready = ready_workers
                status = {"observedGeneration": obj.raw["metadata"]["generation"],
                          "replicas": replicas, "updatedReplicas": replicas,
                          "readyReplicas": ready, "availableReplicas": ready}
                path = f"/apis/apps/v1/namespaces/{ns}/{res.plural}/{name}/status"
                async with self.patch(path, json={"status": status}) as response:
                    assert response.status == 200, await response.text()

    def _has_status(self, resource: kmock.resource) -> bool:
        return resource in self.resources and "status" in self.resources[resource].subresources

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if request.resource is not None and request.subresource == "scale":
            return await self._handle_scale(request)
        if request.resource is not None and request.action == kmock.action.CREATE:
            self._stamp_create(request)
        elif request.resource is not None and request.action == kmock.action.UPDATE:
            self._stamp_update(request.resource, request.namespace, request.name,
                               request.subresource, request.data)
        response = await super()._handle(request)
        if request.action == kmock.action.CREATE and response.status == 200:
            response.set_status(201)  # clients read the created object from a 201 only
        if request.action in (kmock.action.CREATE, kmock.action.DELETE):
            await self._collect_garbage()
        return response

    def _stamp_create(self, request: kmock.Request) -> None:
        meta = request.data.setdefault("metadata", {})
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            generation=1,
            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
        if self._has_status(request.resource):
            request.data.pop("status", None)

    def _stamp_update(self, resource: kmock.resource, namespace: str | None, name: str,
                      subresource: str | None, patch: Any) -> None:
        """Edit a merge patch in place into what the API server would store."""
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted or not isinstance(patch, dict):
            return
        current = self.objects[key].raw
        if self._has_status(resource):
            for field in list(patch):
                if field != "metadata" and (field == "status") != (subresource == "status"):
                    del patch[field]
            if subresource == "status":
                patch.pop("metadata", None)
        meta = patch.setdefault("metadata", {})
        meta["resourceVersion"] = str(next(self._versions))
        if _merge(current, patch).get("spec") != current.get("spec"):
            meta["generation"] = current["metadata"].get("generation", 1) + 1

    async def _handle_scale(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        paths = self._scales.get(request.resource)
        key = (request.resource, request.namespace, request.name)
        if paths is None or key not in self.objects or self.objects[key].deleted:
            return aiohttp.web.json_response({"kind": "Status", "code": 404}, status=404)
        spec_path = _path(paths["specReplicasPath"])
        if request.method in ("PATCH", "PUT"):
            replicas = (request.data.get("spec") or {}).get("replicas")
            patch = _nest(spec_path, replicas)
            self._stamp_update(request.resource, request.namespace, request.name, None, patch)
            await self._publish(key, "MODIFIED", lambda obj: obj.patch(patch))
        obj = self.objects[key].raw
        return aiohttp.web.json_response({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion")},
            "spec": {"replicas": _dig(obj, spec_path)},
            "status": {
                "replicas": _dig(obj, _path(paths["statusReplicasPath"])) or 0,
                "selector": _dig(obj, _path(paths.get("labelSelectorPath", ".status.selector"))),
            },
        })

    async def _publish(self, key: tuple[Any, Any, str], event: str,
                       change: Callable[[Any], None]) -> None:
        """Change a stored object and tell the watchers, as the emulator does for requests."""
        async with self._lock:
            obj = self.objects[key]
            raw = obj.raw if event == "DELETED" else None
            change(obj)
            await self._buses[key[0]].put({"type": event, "object": raw or obj.raw})

    async def _serve_list(self, request: kmock.Request) -> Any:
        listed = await super()._serve_list(request)
        resource = request.resource
        kind = self.resources[resource].kind if resource in self.resources else None
        group_version = f"{resource.group}/{resource.version}".lstrip("/")
        listed.update(apiVersion=group_version, kind=f"{kind or 'Object'}List")
        selector = request.params.get("labelSelector")
        if selector:
            wanted = dict(term.split("=", 1) for term in selector.split(","))
            listed["items"] = [
                item for item in listed["items"]
                if all(item["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
            ]
        return listed

    async def _collect_garbage(self) -> None:
        """Delete every object whose owners are all gone, until none is left."""
        while True:
            alive = {obj.raw["metadata"].get("uid") for obj in self.objects.values()
                     if not obj.deleted}
            orphans = [
                key for key, obj in self.objects.items() if not obj.deleted
                and (owners := [r.get("uid") for r in obj.raw["metadata"].get("ownerReferences", [])])
                and not any(uid in alive for uid in owners)
            ]
            if not orphans:
                return
            for key in orphans:
                await self._publish(key, "DELETED", lambda obj: obj.delete())


@pytest.fixture
async def api_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ApiServer]:
    async with ApiServer() as emulator, kmock.Server(emulator):
        emulator.resources.load_bundled()
        for crd in chart_crds():
            emulator.register_crd(crd)
        monkeypatch.setenv(API_SERVER_ENV, str(emulator.url))
        yield emulator


@pytest.fixture
def kube(api_server: ApiServer) -> Iterator[client.ApiClient]:
    """A synchronous client of the emulator, for the tests' own reads and writes."""
    configuration = client.Configuration(host=str(api_server.url).rstrip("/"))
    configuration.verify_ssl = False
    api_client = client.ApiClient(configuration)
    yield api_client
    api_client.close()


@pytest.fixture
def namespace() -> str:
    return NAMESPACE


@pytest.fixture
def operator(api_server: ApiServer) -> Callable[..., Any]:
    """`async with operator(*extra kopf args) as runner:` runs the operator on the emulator."""
    return lambda *extra_args: running_operator(api_server, *extra_args)


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., Any]:
    return wait_for


@pytest.fixture
def create_cluster(kube: client.ApiClient, namespace: str) -> Callable[..., Any]:
    """`await create_cluster(spec, name="demo")` creates a FastSwitchCluster."""
    custom = client.CustomObjectsApi(kube)

    async def run(spec, name="demo"):
        body = {"apiVersion": names.API_VERSION, "kind": names.KIND,
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        return await asyncio.to_thread(custom.create_namespaced_custom_object,
                                       namespace=namespace, body=body, **CLUSTER_RESOURCE)
    return run


@pytest.fixture
def edit_cluster(kube: client.ApiClient, namespace: str) -> Callable[..., Any]:
    """`await edit_cluster(merge_patch, name="demo")` patches one."""
    custom = client.CustomObjectsApi(kube)

    async def run(patch, name="demo"):
        return await asyncio.to_thread(custom.patch_namespaced_custom_object, name=name,
                                       namespace=namespace, body=patch,
                                       _content_type="application/merge-patch+json", **CLUSTER_RESOURCE)
    return run


@contextlib.asynccontextmanager
async def running_operator(api_server: ApiServer, *extra_args: str) -> AsyncIterator[kopf.testing.KopfRunner]:
    """kopf in its own thread; entered once kopf's watches are open, so no test object reaches
    a half-started operator. Every namespace unless `extra_args` name one (--namespace=...)."""
    scope = [] if any(a.startswith("--namespace") for a in extra_args) else ["--all-namespaces"]
    args = ["run", "--standalone", *scope, "-m", "fastswitch_operator.handlers", *extra_args]
    runner = kopf.testing.KopfRunner(args, timeout=30)
    runner.__enter__()
    try:
        await wait_for(lambda: _watching(api_server), "kopf's watches to start")
        yield runner
    finally:
        # Joining the thread blocks: do it off this loop, which keeps serving the API.
        await asyncio.to_thread(runner.__exit__, None, None, None)


def _watching(api_server: ApiServer) -> bool:
    watched = {str(r.resource.plural) for r in list(api_server)
               if r.action == kmock.action.WATCH and r.resource is not None}
    return {names.PLURAL, "statefulsets", "deployments"} <= watched


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `predicate` (sync, cheap) while the loop keeps serving the API."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
