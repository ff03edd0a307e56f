"""The operator end to end: kopf running the handlers against the emulated API server."""

from __future__ import annotations

import asyncio

import aiohttp
import kmock
from kubernetes import client

from fastswitch_operator import names
from fastswitch_operator.handlers import backoff_seconds

CLUSTERS = f"{names.API_VERSION}/{names.PLURAL}"
GVP = {"group": names.GROUP, "version": names.VERSION, "plural": names.PLURAL}
WORKERS = "apps/v1/statefulsets"
SPEC = {"model": {"preset": "tiny"}, "workers": {"replicas": 2, "gpus": 0}}
CHILDREN = [("v1/configmaps", "demo-config"), ("v1/services", "demo-workers"),
            ("v1/services", "demo-scheduler"), ("v1/services", "demo-frontend"),
            ("v1/services", "demo-kvstore"),
            ("v1/services", "demo-redis"), ("apps/v1/statefulsets", "demo-workers"),
            ("apps/v1/deployments", "demo-scheduler"), ("apps/v1/deployments", "demo-frontend"),
            ("apps/v1/deployments", "demo-kvstore"),
            ("apps/v1/deployments", "demo-redis"),
            ("networking.k8s.io/v1/networkpolicies", "demo-workers"),
            ("networking.k8s.io/v1/networkpolicies", "demo-kvstore"),
            ("networking.k8s.io/v1/networkpolicies", "demo-scheduler"),
            ("networking.k8s.io/v1/networkpolicies", "demo-frontend"),
            ("networking.k8s.io/v1/networkpolicies", "demo-redis"),
            ("v1/secrets", "demo-cluster-token"), ("v1/secrets", "demo-redis")]


def status_of(api_server, namespace, name="demo"):
    return (api_server.live(CLUSTERS, namespace, name) or {}).get("status") or {}


def condition(api_server, namespace, kind):
    for found in status_of(api_server, namespace).get("conditions", []):
        if found["type"] == kind:
            return found
    return {}


async def test_creating_a_cluster_creates_adopted_children(api_server, namespace, operator,
                                                           wait_for, create_cluster):
    async with operator():
        cluster = await create_cluster(SPEC)
        await wait_for(lambda: all(api_server.live(r, namespace, n) for r, n in CHILDREN),
                       "every child")
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Pending", "status")
    for resource, name in CHILDREN:
        owners = api_server.live(resource, namespace, name)["metadata"]["ownerReferences"]
        assert [(o["kind"], o["uid"], o["controller"]) for o in owners] == [
            (names.KIND, cluster["metadata"]["uid"], True)]
    assert status_of(api_server, namespace)["workers"]["desired"] == 2
    assert condition(api_server, namespace, "Reconciled")["observedGeneration"] == 1


async def test_ready_workers_make_the_cluster_ready(api_server, namespace, operator, wait_for,
                                                    create_cluster):
    async with operator():
        await create_cluster(SPEC)
        await wait_for(lambda: api_server.live(WORKERS, namespace, "demo-workers"), "workers")
        await api_server.settle_workloads(namespace, ready_workers=1)
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Progressing",
                       "Progressing")
        assert condition(api_server, namespace, "WorkersReady")["message"] == "1/2 workers ready"
        await api_server.settle_workloads(namespace)
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Ready", "Ready")
    assert status_of(api_server, namespace)["workers"]["ready"] == 2
    assert condition(api_server, namespace, "Ready")["status"] == "True"


async def test_editing_the_spec_patches_the_children(api_server, namespace, operator, wait_for,
                                                     create_cluster, edit_cluster):
    def scheduler_args():
        deployment = api_server.live("apps/v1/deployments", namespace, "demo-scheduler") or {}
        return deployment.get("spec", {}).get("template", {}).get("spec", {}).get(
            "containers", [{}])[0].get("args", [])

    async with operator():
        await create_cluster(SPEC)
        await wait_for(lambda: "--policy=vtc" in scheduler_args(), "the vtc scheduler")
        await edit_cluster({"spec": {"scheduler": {"policy": "priority", "tickMs": 50},
                                     "logLevel": "debug"}})
        await wait_for(lambda: "--policy=priority" in scheduler_args(), "the priority scheduler")
        await wait_for(lambda: status_of(api_server, namespace).get("observedGeneration") == 2,
                       "generation 2 observed")
    assert "--tick-ms=50" in scheduler_args()
    config = api_server.live("v1/configmaps", namespace, "demo-config")["data"]
    assert config["FASTSWITCH_LOG_LEVEL"] == "debug"


async def test_scaling_the_cluster_scales_its_workers(api_server, kube, namespace, operator,
                                                      wait_for, create_cluster):
    custom = client.CustomObjectsApi(kube)

    def worker_replicas():
        return (api_server.live(WORKERS, namespace, "demo-workers") or {}).get("spec", {}).get("replicas")

    async with operator():
        await create_cluster(SPEC)
        await wait_for(lambda: worker_replicas() == 2, "2 workers")
        # What `kubectl scale fsc/demo --replicas=5` and a HorizontalPodAutoscaler do.
        await asyncio.to_thread(custom.patch_namespaced_custom_object_scale, name="demo",
                                namespace=namespace, body={"spec": {"replicas": 5}},
                                _content_type="application/merge-patch+json", **GVP)
        await wait_for(lambda: worker_replicas() == 5, "5 workers")
        await wait_for(lambda: status_of(api_server, namespace).get("workers", {}).get("desired") == 5,
                       "5 desired workers in the status")
        await api_server.settle_workloads(namespace)
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Ready", "Ready")
        scale = await asyncio.to_thread(custom.get_namespaced_custom_object_scale, name="demo",
                                        namespace=namespace, **GVP)
    assert scale["spec"]["replicas"] == 5
    assert scale["status"]["replicas"] == 5
    assert scale["status"]["selector"] == names.label_selector("demo", names.WORKER)


async def test_an_invalid_spec_gets_a_clear_condition_and_no_children(
        api_server, namespace, operator, wait_for, create_cluster, edit_cluster):
    async with operator():
        await create_cluster({"model": {"preset": "tiny"}, "scheduler": {"policy": "fcfs",
                                                                       "vtc": {}}})
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Failed", "Failed")
        reconciled = condition(api_server, namespace, "Reconciled")
        assert reconciled["reason"] == "InvalidSpec"
        assert reconciled["message"] == (
            "invalid spec: spec.scheduler.vtc is only used by policy vtc")
        assert not any(api_server.live(r, namespace, n) for r, n in CHILDREN)
        # Fixing the spec deploys the cluster.
        await edit_cluster({"spec": {"scheduler": {"vtc": None}}})
        await wait_for(lambda: api_server.live(WORKERS, namespace, "demo-workers"), "workers")
        await wait_for(lambda: condition(api_server, namespace, "Reconciled").get("status") == "True",
                       "Reconciled")


async def test_deleting_the_cluster_cleans_up(api_server, kube, namespace, operator, wait_for,
                                              create_cluster):
    custom = client.CustomObjectsApi(kube)
    async with operator():
        await create_cluster(SPEC)
        await wait_for(lambda: all(api_server.live(r, namespace, n) for r, n in CHILDREN), "children")
        await asyncio.to_thread(custom.delete_namespaced_custom_object, name="demo",
                                namespace=namespace, **GVP)
        # No finalizer holds the cluster; its children go with it (owner references).
        await wait_for(lambda: api_server.live(CLUSTERS, namespace, "demo") is None, "deletion")
        await wait_for(lambda: not any(api_server.live(r, namespace, n) for r, n in CHILDREN),
                       "children gone")
        await asyncio.sleep(0.5)  # and the operator does not bring any back
    assert not any(api_server.live(r, namespace, n) for r, n in CHILDREN)


async def test_a_restarted_operator_reconciles_without_writing(api_server, namespace, operator,
                                                               wait_for, create_cluster,
                                                               unused_tcp_port):
    async with operator():
        await create_cluster(SPEC)
        await wait_for(lambda: status_of(api_server, namespace).get("phase") == "Pending", "status")
    writes_before, requests_before = len(api_server.writes()), len(list(api_server))
    port = unused_tcp_port
    async with operator(f"--liveness=http://127.0.0.1:{port}/healthz"):
        # The resume handler has run once the restarted operator probes healthy.
        async with aiohttp.ClientSession() as session:
            async def healthy():
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False
            deadline = asyncio.get_running_loop().time() + 10
            while not await healthy():
                assert asyncio.get_running_loop().time() < deadline, "no liveness endpoint"
                await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
    reads = [r for r in list(api_server)[requests_before:]
             if r.action == kmock.action.FETCH and r.name == "demo-workers"]
    assert reads, "the restarted operator did not reconcile the cluster"
    resumed = [w for w in api_server.writes()[writes_before:]
               if w.resource.group != "" or w.resource.plural != "events"]
    assert resumed == []



def test_waiting_backs_off_to_a_minute():
    assert [backoff_seconds(retry) for retry in range(6)] == [10, 20, 40, 60, 60, 60]
    assert backoff_seconds(1000) == 60
