"""One reconcile (`sync`) against the emulated API server, without kopf in between."""

from __future__ import annotations

import asyncio
import base64

import pytest

from fastswitch_operator import names
from fastswitch_operator.kube import KubeApi
from fastswitch_operator.reconcile import ClusterLocks, sync
from fastswitch_operator.spec import Images

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
CLUSTERS = f"{names.API_VERSION}/{names.PLURAL}"
CHILD_RESOURCES = ("v1/configmaps", "v1/services", "apps/v1/deployments", "apps/v1/statefulsets",
                   "networking.k8s.io/v1/networkpolicies", "v1/secrets",
                   "autoscaling/v2/horizontalpodautoscalers")
FRONTENDS = ("apps/v1/deployments", "demo-frontend")
AUTOSCALERS = "autoscaling/v2/horizontalpodautoscalers"


@pytest.fixture
async def kube_api(api_server):
    api = await asyncio.to_thread(KubeApi.connect, str(api_server.url))
    yield api
    api.close()


@pytest.fixture
def reconcile_now(kube_api, namespace):
    locks = ClusterLocks()

    async def run(name="demo"):
        return await asyncio.to_thread(sync, kube_api, locks, namespace, name, IMAGES, "2026-01-01T00:00:00Z")
    return run


def children(api_server, namespace):
    found = {}
    for resource in CHILD_RESOURCES:
        for (res, ns, name), obj in api_server.objects.items():
            if str(res.plural) == resource.rsplit("/", 1)[1] and ns == namespace and not obj.deleted:
                found[(obj.raw["kind"], name)] = obj.raw
    return found


def conditions(api_server, namespace, name="demo"):
    cluster = api_server.live(CLUSTERS, namespace, name)
    return {c["type"]: c for c in cluster["status"]["conditions"]}


async def test_sync_creates_adopted_children_and_reports_status(api_server, namespace, create_cluster,
                                                                 reconcile_now):
    cluster = await create_cluster({"model": {"preset": "tiny"}, "workers": {"replicas": 2}})
    synced = await reconcile_now()
    assert synced.error is None
    built = children(api_server, namespace)
    assert set(built) == {
        ("ConfigMap", "demo-config"), ("Service", "demo-workers"), ("Service", "demo-frontend"),
        ("Service", "demo-scheduler"), ("Service", "demo-kvstore"), ("Service", "demo-redis"),
        ("StatefulSet", "demo-workers"), ("Deployment", "demo-frontend"),
        ("Deployment", "demo-scheduler"), ("Deployment", "demo-kvstore"),
        ("Deployment", "demo-redis"),
        ("NetworkPolicy", "demo-workers"), ("NetworkPolicy", "demo-frontend"),
        ("NetworkPolicy", "demo-scheduler"), ("NetworkPolicy", "demo-kvstore"),
        ("NetworkPolicy", "demo-redis"),
        ("Secret", "demo-cluster-token"), ("Secret", "demo-redis"),
    }
    for child in built.values():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": names.API_VERSION, "kind": names.KIND, "name": "demo",
                         "uid": cluster["metadata"]["uid"], "controller": True,
                         "blockOwnerDeletion": True}
        assert child["metadata"]["labels"]["app.kubernetes.io/instance"] == "demo"
    status = api_server.live(CLUSTERS, namespace, "demo")["status"]
    assert status["phase"] == "Pending"
    assert status["workers"]["desired"] == 2
    assert status["endpoints"]["frontend"] == f"demo-frontend.{namespace}.svc:50051"
    assert status["endpoints"]["scheduler"] == f"demo-scheduler.{namespace}.svc:50052"
    assert status["frontend"] == {"desired": 2, "replicas": 0, "ready": 0}


async def test_a_second_sync_writes_nothing(api_server, create_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    writes_before = len(api_server.writes())
    synced = await reconcile_now()
    assert api_server.writes()[writes_before:] == []
    assert set(synced.outcome.actions.values()) == {"unchanged"}


async def test_ready_workloads_make_the_cluster_ready(api_server, namespace, create_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}, "workers": {"replicas": 3}})
    await reconcile_now()
    await api_server.settle_workloads(namespace, ready_workers=2)
    await reconcile_now()
    assert api_server.live(CLUSTERS, namespace, "demo")["status"]["phase"] == "Progressing"
    assert conditions(api_server, namespace)["WorkersReady"]["message"] == "2/3 workers ready"
    await api_server.settle_workloads(namespace)
    await reconcile_now()
    cluster = api_server.live(CLUSTERS, namespace, "demo")
    assert cluster["status"]["phase"] == "Ready"
    assert cluster["status"]["workers"]["ready"] == 3
    assert cluster["status"]["frontend"] == {"desired": 2, "replicas": 2, "ready": 2}
    assert conditions(api_server, namespace)["Ready"]["status"] == "True"


async def test_spec_changes_patch_the_children(api_server, namespace, create_cluster, edit_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    await edit_cluster({"spec": {"workers": {"replicas": 4}, "scheduler": {"policy": "fcfs"},
                                 "logLevel": "warning"}})
    synced = await reconcile_now()
    assert synced.outcome.actions["StatefulSet/demo-workers"] == "patched"
    assert synced.outcome.actions["Deployment/demo-redis"] == "unchanged"
    built = children(api_server, namespace)
    assert built[("StatefulSet", "demo-workers")]["spec"]["replicas"] == 4
    args = built[("Deployment", "demo-scheduler")]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--policy=fcfs" in args
    assert built[("ConfigMap", "demo-config")]["data"]["FASTSWITCH_LOG_LEVEL"] == "warning"
    assert api_server.live(CLUSTERS, namespace, "demo")["status"]["observedGeneration"] == 2


async def test_external_redis_replaces_the_managed_one(api_server, namespace, create_cluster, edit_cluster,
                                                       reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    await edit_cluster({"spec": {"kvstore": {"redis": {"url": "redis://cache.example:6379/0"}}}})
    synced = await reconcile_now()
    assert synced.outcome.actions["Deployment/demo-redis"] == "deleted"
    assert synced.outcome.actions["Service/demo-redis"] == "deleted"
    assert ("Deployment", "demo-redis") not in children(api_server, namespace)


async def test_pruning_spares_objects_the_cluster_does_not_own(api_server, namespace, create_cluster,
                                                               reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}, "kvstore": {"redis": {"url": "redis://r:6379"}}})
    foreign = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "demo-redis", "namespace": namespace,
                            "labels": {"app.kubernetes.io/instance": "demo",
                                       "app.kubernetes.io/managed-by": names.MANAGED_BY}},
               "spec": {"ports": [{"port": 6379}]}}
    await api_server.create(foreign)
    await reconcile_now()
    assert ("Service", "demo-redis") in children(api_server, namespace)


async def test_invalid_spec_is_reported_and_deploys_nothing(api_server, namespace, create_cluster,
                                                            reconcile_now):
    await create_cluster({"model": {"preset": "tiny", "pvc": {"claimName": "models"}}})
    synced = await reconcile_now()
    assert "set exactly one of spec.model.preset or spec.model.pvc" in str(synced.error)
    assert children(api_server, namespace) == {}
    cluster = api_server.live(CLUSTERS, namespace, "demo")
    assert cluster["status"]["phase"] == "Failed"
    reconciled = conditions(api_server, namespace)["Reconciled"]
    assert reconciled["status"] == "False" and reconciled["reason"] == "InvalidSpec"
    assert "spec.model.preset or spec.model.pvc" in reconciled["message"]


async def test_a_missing_model_claim_is_waited_for(api_server, namespace, create_cluster, reconcile_now):
    await create_cluster({"model": {"pvc": {"claimName": "models"}}})
    synced = await reconcile_now()
    assert synced.error is not None
    assert children(api_server, namespace) == {}
    assert api_server.live(CLUSTERS, namespace, "demo")["status"]["phase"] == "Pending"
    assert conditions(api_server, namespace)["Reconciled"]["reason"] == "WaitingForVolume"
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "models", "namespace": namespace}, "spec": {}}
    await api_server.create(claim)
    synced = await reconcile_now()
    assert synced.error is None
    assert ("StatefulSet", "demo-workers") in children(api_server, namespace)


async def test_a_name_taken_by_a_foreign_object_is_a_conflict(api_server, namespace, create_cluster,
                                                              reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    taken = {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "demo-scheduler", "namespace": namespace},
             "spec": {"ports": [{"port": 80}]}}
    await api_server.create(taken)
    synced = await reconcile_now()
    assert "Service team-a/demo-scheduler exists and is not owned by this cluster" in str(synced.error)
    assert conditions(api_server, namespace)["Reconciled"]["reason"] == "NameConflict"
    assert api_server.live("v1/services", namespace, "demo-scheduler")["spec"]["ports"][0]["port"] == 80


async def test_a_deleted_child_is_restored(api_server, namespace, create_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    async with api_server.delete(f"/apis/apps/v1/namespaces/{namespace}/deployments/demo-scheduler"):
        pass
    synced = await reconcile_now()
    assert synced.outcome.actions["Deployment/demo-scheduler"] == "created"


async def test_a_missing_cluster_syncs_to_nothing(reconcile_now):
    assert await reconcile_now("absent") is None


WORKLOADS = [("apps/v1/deployments", "demo-redis"), ("apps/v1/deployments", "demo-kvstore"),
             ("apps/v1/deployments", "demo-scheduler"), ("apps/v1/statefulsets", "demo-workers"),
             FRONTENDS]


def secret_value(api_server, namespace, name, key):
    secret = api_server.live("v1/secrets", namespace, name)
    return base64.b64decode(secret["data"][key]).decode()


def pod_annotations(api_server, namespace, resource, name):
    workload = api_server.live(resource, namespace, name)
    return workload["spec"]["template"]["metadata"].get("annotations", {})


async def test_generated_secrets_are_made_once_adopted_and_never_rewritten(
        api_server, namespace, create_cluster, reconcile_now):
    cluster = await create_cluster({"model": {"preset": "tiny"}})
    synced = await reconcile_now()
    assert synced.outcome.actions["Secret/demo-cluster-token"] == "created"
    token = secret_value(api_server, namespace, "demo-cluster-token", "token")
    password = secret_value(api_server, namespace, "demo-redis", "password")
    assert len(token) >= 40 and len(password) >= 40 and token != password
    for name in ("demo-cluster-token", "demo-redis"):
        secret = api_server.live("v1/secrets", namespace, name)
        (owner,) = secret["metadata"]["ownerReferences"]
        assert owner["uid"] == cluster["metadata"]["uid"]
        # The value is never copied into an annotation (kubectl apply's habit).
        assert "last-applied" not in str(secret["metadata"].get("annotations", {}))
    synced = await reconcile_now()
    assert synced.outcome.actions["Secret/demo-cluster-token"] == "unchanged"
    assert secret_value(api_server, namespace, "demo-cluster-token", "token") == token
    assert secret_value(api_server, namespace, "demo-redis", "password") == password


async def test_a_secret_created_beforehand_is_used_as_it_is(api_server, namespace, create_cluster,
                                                            reconcile_now):
    mine = {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "demo-cluster-token", "namespace": namespace},
            "data": {"token": base64.b64encode(b"a-token-i-chose-myself").decode()}}
    await api_server.create(mine)
    await create_cluster({"model": {"preset": "tiny"}})
    synced = await reconcile_now()
    assert synced.error is None
    assert synced.outcome.actions["Secret/demo-cluster-token"] == "unchanged"
    assert secret_value(api_server, namespace, "demo-cluster-token", "token") == "a-token-i-chose-myself"
    # Yours, not adopted: it outlives the cluster.
    assert "ownerReferences" not in api_server.live("v1/secrets", namespace, "demo-cluster-token")["metadata"]


async def test_an_unusable_secret_is_reported_and_waited_on(api_server, namespace, create_cluster,
                                                            reconcile_now):
    broken = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "demo-redis", "namespace": namespace},
              "data": {"pass": base64.b64encode(b"x" * 20).decode()}}
    await api_server.create(broken)
    await create_cluster({"model": {"preset": "tiny"}})
    synced = await reconcile_now()
    assert synced.error is not None
    reconciled = conditions(api_server, namespace)["Reconciled"]
    assert reconciled["reason"] == "InvalidSecret"
    assert "Secret demo-redis has no key 'password'" in reconciled["message"]
    assert ("Deployment", "demo-redis") not in children(api_server, namespace)


async def test_a_deleted_secret_is_regenerated_and_rolls_the_pods_that_read_it(
        api_server, namespace, create_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    password = secret_value(api_server, namespace, "demo-redis", "password")
    before = {(r, n): pod_annotations(api_server, namespace, r, n) for r, n in WORKLOADS}
    async with api_server.delete(f"/api/v1/namespaces/{namespace}/secrets/demo-redis"):
        pass
    synced = await reconcile_now()
    assert synced.outcome.actions["Secret/demo-redis"] == "created"
    assert secret_value(api_server, namespace, "demo-redis", "password") != password
    rolled = {name for (r, name) in WORKLOADS
              if pod_annotations(api_server, namespace, r, name) != before[r, name]}
    # Redis and the kvstore restart with the new password; the workers keep their KV.
    assert rolled == {"demo-redis", "demo-kvstore"}


async def test_tls_waits_for_a_complete_certificate_secret(api_server, namespace, create_cluster,
                                                           reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}, "tls": {"secretName": "demo-tls"}})
    await reconcile_now()
    assert conditions(api_server, namespace)["Reconciled"]["reason"] == "WaitingForTLSSecret"
    assert children(api_server, namespace) == {}
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode()
    # An issuer that writes no ca.crt: the services could not verify each other.
    await api_server.create({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                             "metadata": {"name": "demo-tls", "namespace": namespace},
                             "data": {"tls.crt": pem, "tls.key": pem}})
    await reconcile_now()
    assert "Secret demo-tls (spec.tls.secretName) has no ca.crt" in (
        conditions(api_server, namespace)["Reconciled"]["message"])
    async with api_server.patch(f"/api/v1/namespaces/{namespace}/secrets/demo-tls",
                                json={"data": {"ca.crt": pem}}):
        pass
    synced = await reconcile_now()
    assert synced.error is None
    workers = children(api_server, namespace)[("StatefulSet", "demo-workers")]
    volumes = workers["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "demo-tls", "defaultMode": 0o440}} in volumes


async def test_disabling_network_policies_deletes_them(api_server, namespace, create_cluster,
                                                       edit_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    assert ("NetworkPolicy", "demo-workers") in children(api_server, namespace)
    await edit_cluster({"spec": {"networkPolicy": {"enabled": False}}})
    synced = await reconcile_now()
    assert synced.outcome.actions["NetworkPolicy/demo-workers"] == "deleted"
    assert not [kind for kind, _ in children(api_server, namespace) if kind == "NetworkPolicy"]


async def test_frontend_ingress_can_be_narrowed_and_opened_again(api_server, namespace, create_cluster,
                                                                 edit_cluster, reconcile_now):
    def frontend_rule():
        policy = api_server.live("networking.k8s.io/v1/networkpolicies", namespace, "demo-frontend")
        rule, _ = policy["spec"]["ingress"]  # the clients' port, then the metrics port
        return rule

    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    assert "from" not in frontend_rule()
    peers = [{"podSelector": {"matchLabels": {"app": "gateway"}}}]
    await edit_cluster({"spec": {"networkPolicy": {"frontendIngress": peers}}})
    await reconcile_now()
    assert frontend_rule()["from"] == peers
    await edit_cluster({"spec": {"networkPolicy": {"frontendIngress": None}}})
    await reconcile_now()
    assert "from" not in frontend_rule()


async def test_a_frontend_service_without_the_http_port_gains_it(
        api_server, namespace, create_cluster, reconcile_now):
    """A Service and policy an operator from before the OpenAI-compatible API made (gRPC only)
    open the HTTP port at the next reconcile."""
    await create_cluster({"model": {"preset": "tiny"}})
    await reconcile_now()
    grpc_only = {"spec": {"ports": [{"name": "grpc", "port": names.FRONTEND_PORT,
                                     "targetPort": "grpc", "protocol": "TCP",
                                     "appProtocol": "grpc"}]}}
    async with api_server.patch(f"/api/v1/namespaces/{namespace}/services/demo-frontend",
                                json=grpc_only):
        pass
    policy_path = (f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/"
                   "demo-frontend")
    async with api_server.patch(policy_path, json={"spec": {"ingress": [
            {"ports": [{"protocol": "TCP", "port": names.FRONTEND_PORT}]}]}}):
        pass
    synced = await reconcile_now()
    assert synced.outcome.actions["Service/demo-frontend"] == "patched"
    assert synced.outcome.actions["NetworkPolicy/demo-frontend"] == "patched"
    service = api_server.live("v1/services", namespace, "demo-frontend")
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("grpc", names.FRONTEND_PORT, "grpc"), ("http", names.FRONTEND_HTTP_PORT, "http")}
    policy = api_server.live("networking.k8s.io/v1/networkpolicies", namespace, "demo-frontend")
    rule, _ = policy["spec"]["ingress"]  # the clients' ports, then the metrics port
    assert {p["port"] for p in rule["ports"]} == {names.FRONTEND_PORT, names.FRONTEND_HTTP_PORT}
    frontend = api_server.live(FRONTENDS[0], namespace, FRONTENDS[1])
    (container,) = frontend["spec"]["template"]["spec"]["containers"]
    assert {"name": "http", "containerPort": names.FRONTEND_HTTP_PORT,
            "protocol": "TCP"} in container["ports"]


def frontend_replicas(api_server, namespace):
    resource, name = FRONTENDS
    return api_server.live(resource, namespace, name)["spec"].get("replicas")


async def test_frontends_follow_their_replicas_until_an_autoscaler_takes_over(
        api_server, namespace, create_cluster, edit_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"}, "frontend": {"replicas": 3}})
    await reconcile_now()
    assert frontend_replicas(api_server, namespace) == 3
    assert api_server.live(AUTOSCALERS, namespace, "demo-frontend") is None
    await edit_cluster({"spec": {"frontend": {"autoscaling": {"minReplicas": 2, "maxReplicas": 6}}}})
    synced = await reconcile_now()
    assert synced.outcome.actions["HorizontalPodAutoscaler/demo-frontend"] == "created"
    autoscaler = api_server.live(AUTOSCALERS, namespace, "demo-frontend")
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "demo-frontend"
    assert autoscaler["metadata"]["ownerReferences"][0]["kind"] == names.KIND
    # Handed over as it is: a count removed from the Deployment would be defaulted to 1.
    assert frontend_replicas(api_server, namespace) == 3


async def test_reconciles_leave_the_autoscalers_choice_alone_until_autoscaling_is_removed(
        api_server, namespace, create_cluster, edit_cluster, reconcile_now):
    await create_cluster({"model": {"preset": "tiny"},
                          "frontend": {"replicas": 3, "autoscaling": {"maxReplicas": 6}}})
    await reconcile_now()
    # What the autoscaler does: it scales the Deployment.
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/demo-frontend"
    async with api_server.patch(path, json={"spec": {"replicas": 5}}) as response:
        assert response.status == 200
    await api_server.settle_workloads(namespace)
    synced = await reconcile_now()
    assert synced.outcome.actions["Deployment/demo-frontend"] == "unchanged"
    assert frontend_replicas(api_server, namespace) == 5
    status = api_server.live(CLUSTERS, namespace, "demo")["status"]
    assert status["frontend"] == {"desired": 5, "replicas": 5, "ready": 5}
    await edit_cluster({"spec": {"frontend": {"autoscaling": None}}})
    synced = await reconcile_now()
    assert synced.outcome.actions["HorizontalPodAutoscaler/demo-frontend"] == "deleted"
    assert api_server.live(AUTOSCALERS, namespace, "demo-frontend") is None
    assert frontend_replicas(api_server, namespace) == 3
