"""The chart's RBAC grants every request the operator makes, and the operator works with a
namespaced Role (the chart's default): what it does in one namespace stays there."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import helm_python as helm
import kmock
import yaml
from kubernetes import client

from fastswitch_operator import names
from fastswitch_operator.kube import KubeApi
from fastswitch_operator.reconcile import ClusterLocks, sync
from fastswitch_operator.spec import Images

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "fastswitch"
CLUSTER_RESOURCE = {"group": names.GROUP, "version": names.VERSION, "plural": names.PLURAL}
IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
VERBS = {kmock.action.LIST: "list", kmock.action.WATCH: "watch", kmock.action.FETCH: "get",
         kmock.action.CREATE: "create", kmock.action.DELETE: "delete"}


def chart_role_rules(namespace: str) -> list[dict]:
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = chart.render({}, name="fs", namespace=namespace)
    (role,) = [doc for doc in yaml.safe_load_all(rendered["fastswitch/templates/operator-role.yaml"])
               if doc]
    assert role["kind"] == "Role" and role["metadata"]["namespace"] == namespace
    return role["rules"]


def is_granted(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
               for rule in rules)


def verb_of(request: kmock.Request) -> str:
    if request.action is kmock.action.UPDATE:
        return "patch" if str(request.method).upper().endswith("PATCH") else "update"
    return VERBS[request.action]


async def test_the_namespaced_role_grants_every_request_a_reconcile_makes(
        api_server, namespace, create_cluster, edit_cluster):
    rules = chart_role_rules(namespace)
    api = await asyncio.to_thread(KubeApi.connect, str(api_server.url))
    locks = ClusterLocks()
    made: list[kmock.Request] = []

    async def reconcile():
        before = len(list(api_server))
        await asyncio.to_thread(sync, api, locks, namespace, "demo", IMAGES, "2026-01-01T00:00:00Z")
        made.extend(list(api_server)[before:])

    try:
        pem = base64.b64encode(b"pem").decode()
        await api_server.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                                 "metadata": {"name": "demo-tls", "namespace": namespace},
                                 "data": {"tls.crt": pem, "tls.key": pem, "ca.crt": pem}})
        await create_cluster({"model": {"preset": "tiny"}, "tls": {"secretName": "demo-tls"},
                              "frontend": {"autoscaling": {"maxReplicas": 4}}})
        await reconcile()  # creates everything, Secrets included
        await api_server.settle_workloads(namespace)
        await reconcile()  # reads back, writes status
        await edit_cluster({"spec": {"networkPolicy": {"enabled": False},
                                     "kvstore": {"redis": {"url": "redis://:pw@cache:6379/0"}},
                                     "frontend": {"autoscaling": None}}})
        await reconcile()  # patches and prunes (the autoscaler too)
    finally:
        api.close()
    requests = {(r.resource.group, r.resource.plural + (f"/{r.subresource}" if r.subresource else ""),
                 verb_of(r), r.namespace) for r in made if r.resource is not None}
    kinds = {(group, resource) for group, resource, _, _ in requests}
    assert {("", "secrets"), ("networking.k8s.io", "networkpolicies"),
            ("autoscaling", "horizontalpodautoscalers")} <= kinds
    assert ("autoscaling", "horizontalpodautoscalers", "delete", namespace) in requests
    assert {namespace_ for *_, namespace_ in requests} == {namespace}
    missing = sorted(r[:3] for r in requests if not is_granted(rules, *r[:3]))
    assert missing == []


async def test_an_operator_serving_one_namespace_leaves_the_others_alone(
        api_server, kube, namespace, operator, wait_for, create_cluster):
    custom = client.CustomObjectsApi(kube)
    elsewhere = {"apiVersion": names.API_VERSION, "kind": names.KIND,
                 "metadata": {"name": "other", "namespace": "team-b"},
                 "spec": {"model": {"preset": "tiny"}}}
    async with operator(f"--namespace={namespace}"):
        await asyncio.to_thread(custom.create_namespaced_custom_object, namespace="team-b",
                                body=elsewhere, **CLUSTER_RESOURCE)
        await create_cluster({"model": {"preset": "tiny"}})
        await wait_for(lambda: api_server.live("apps/v1/statefulsets", namespace, "demo-workers"),
                       "the served namespace's workers")
        await asyncio.sleep(0.5)
    assert api_server.live("apps/v1/statefulsets", "team-b", "other-workers") is None
    assert api_server.live("v1/secrets", "team-b", "other-cluster-token") is None
    served = {str(r.namespace) for r in list(api_server)
              if r.action is kmock.action.WATCH and r.resource is not None
              and r.resource.plural == names.PLURAL}
    assert served == {namespace}
