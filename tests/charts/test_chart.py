"""The Helm chart, rendered and linted by Helm's own engine, checked by kubernetes-validate."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest

from fastswitch_operator.spec import Images, parse_spec

KUBE_VERSION = "1.30.0"
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance",
                 "app.kubernetes.io/component"}
RECOMMENDED_KEYS = SELECTOR_KEYS | {"app.kubernetes.io/version", "app.kubernetes.io/part-of",
                                    "app.kubernetes.io/managed-by", "helm.sh/chart"}
NON_DEFAULT = {
    "fullnameOverride": "fastswitch",
    "operator": {
        "image": {"repository": "registry.example/fastswitch/operator", "tag": "0.2.0",
                  "pullPolicy": "Always"},
        "imagePullSecrets": ["registry"],
        "watch": {"clusterWide": False, "namespaces": ["fastswitch-system", "team-b"]},
        "logLevel": "debug",
        "healthPort": 9090,
        "nodeSelector": {"pool": "system"},
        "tolerations": [{"key": "system", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "pool", "operator": "In", "values": ["system"]}]}]}}},
        "podAnnotations": {"example.com/team": "ml"},
        "priorityClassName": "system-cluster-critical",
        "serviceAccount": {"create": True, "name": "fs-operator",
                           "annotations": {"example.com/role": "operator"}},
    },
    "images": {"worker": {"repository": "registry.example/fastswitch/worker", "tag": "cu12"},
               "frontend": {"repository": "registry.example/fastswitch/frontend", "tag": "0.2.0"},
               "pullPolicy": "Always", "pullSecrets": ["registry", "mirror"]},
    "exampleCluster": {"enabled": True, "name": "smoke", "spec": {
        "model": {"preset": "tiny"},
        "workers": {"replicas": 2, "gpus": 0, "hostSwapBytes": "256Mi"},
        "frontend": {"autoscaling": {"minReplicas": 2, "maxReplicas": 5}},
        "scheduler": {"policy": "fcfs"},
    }},
}


def operator_deployment(manifests):
    (deployment,) = manifests["operator-deployment.yaml"]
    return deployment


def operator_args(manifests):
    return operator_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]["args"]


def operator_env(manifests):
    container = operator_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def all_docs(manifests):
    return [doc for docs in manifests.values() for doc in docs]


CLUSTER_WIDE = {"operator": {"watch": {"clusterWide": True}, "networkPolicy": {"enabled": False}}}
VALUE_SETS = pytest.mark.parametrize("values", [{}, NON_DEFAULT, CLUSTER_WIDE],
                                     ids=["default", "non-default", "cluster-wide"])


@VALUE_SETS
def test_every_manifest_validates_strictly(render, validate_cluster, values):
    for doc in all_docs(render(values)):
        if doc["kind"] == "FastSwitchCluster":
            validate_cluster(doc)
        else:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


@VALUE_SETS
def test_helm_lint_strict_is_clean(chart_dir, values):
    report = helm.lint(chart_dir, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_one_resource_kind_per_template_named_after_it(render):
    for template, docs in render(NON_DEFAULT).items():
        kinds = {doc["kind"] for doc in docs}
        assert len(kinds) == 1, template
        component, kind_part = template.removesuffix(".yaml").split("-", 1)
        assert kind_part == next(iter(kinds)).lower(), template


def kinds_of(manifests):
    return {doc["kind"] for doc in all_docs(manifests)}


def test_default_install_is_the_operator_serving_its_own_namespace(render):
    manifests = render()
    assert kinds_of(manifests) == {
        "ServiceAccount", "Role", "RoleBinding", "Deployment", "NetworkPolicy"}
    (role,) = manifests["operator-role.yaml"]
    (binding,) = manifests["operator-rolebinding.yaml"]
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "fastswitch-system"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    args = operator_args(manifests)
    assert args[:3] == ["run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
    assert [a for a in args if "namespace" in a] == ["--namespace=fastswitch-system"]
    assert args[-2:] == ["-m", "fastswitch_operator.handlers"]
    env = operator_env(manifests)
    assert env["FASTSWITCH_WORKER_IMAGE"] == "fastswitch/worker:0.1.0"
    assert env["FASTSWITCH_FRONTEND_IMAGE"] == "fastswitch/frontend:0.1.0"
    assert env["FASTSWITCH_REDIS_IMAGE"] == "redis:7.4-alpine"
    image = operator_deployment(manifests)["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "fastswitch/operator:0.1.0"


def test_cluster_wide_is_asked_for_and_then_nothing_is_namespaced(render):
    manifests = render({"operator": {"watch": {"clusterWide": True}}})
    assert kinds_of(manifests) == {
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "NetworkPolicy"}
    (binding,) = manifests["operator-clusterrolebinding.yaml"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fs-fastswitch-operator",
                                    "namespace": "fastswitch-system"}]
    args = operator_args(manifests)
    assert "--all-namespaces" in args
    assert not [a for a in args if a.startswith("--namespace")]


def test_watched_namespaces_get_roles_and_nothing_cluster_wide(render):
    manifests = render(NON_DEFAULT)
    kinds = kinds_of(manifests)
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = manifests["operator-role.yaml"]
    assert [r["metadata"]["namespace"] for r in roles] == ["fastswitch-system", "team-b"]
    bindings = manifests["operator-rolebinding.yaml"]
    assert [b["subjects"][0] for b in bindings] == [
        {"kind": "ServiceAccount", "name": "fs-operator", "namespace": "fastswitch-system"}] * 2
    args = operator_args(manifests)
    assert [a for a in args if "namespace" in a] == [
        "--namespace=fastswitch-system", "--namespace=team-b"]
    elsewhere = render({"operator": {"watch": {"namespaces": ["team-a"]}}})
    assert [r["metadata"]["namespace"] for r in elsewhere["operator-role.yaml"]] == ["team-a"]
    assert "--namespace=fastswitch-system" not in operator_args(elsewhere)


def test_the_example_cluster_must_be_where_the_operator_looks(chart):
    values = {"exampleCluster": {"enabled": True}, "operator": {"watch": {"namespaces": ["a"]}}}
    with pytest.raises(helm.HelmRenderError, match="does not serve: add it to operator.watch"):
        chart.render(values, name="fs", namespace="ml")


def test_operator_pod_admits_no_ingress_unless_told_not_to_guard_it(render):
    (policy,) = render()["operator-networkpolicy.yaml"]
    deployment = operator_deployment(render())
    assert policy["metadata"]["namespace"] == "fastswitch-system"
    assert policy["spec"]["podSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == []
    assert "operator-networkpolicy.yaml" not in render(
        {"operator": {"networkPolicy": {"enabled": False}}})


def test_non_default_values_reach_the_operator(render):
    manifests = render(NON_DEFAULT)
    pod = operator_deployment(manifests)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/fastswitch/operator:0.2.0"
    assert container["imagePullPolicy"] == "Always"
    assert "--debug" in container["args"]
    assert "--liveness=http://0.0.0.0:9090/healthz" in container["args"]
    assert container["ports"] == [{"name": "health", "containerPort": 9090, "protocol": "TCP"}]
    assert pod["serviceAccountName"] == "fs-operator"
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["nodeSelector"] == {"pool": "system"}
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert operator_deployment(manifests)["metadata"]["name"] == "fastswitch-operator"
    env = operator_env(manifests)
    assert env["FASTSWITCH_WORKER_IMAGE"] == "registry.example/fastswitch/worker:cu12"
    assert env["FASTSWITCH_SCHEDULER_IMAGE"] == "fastswitch/scheduler:0.1.0"
    assert env["FASTSWITCH_FRONTEND_IMAGE"] == "registry.example/fastswitch/frontend:0.2.0"
    assert env["FASTSWITCH_IMAGE_PULL_SECRETS"] == "registry,mirror"


def test_example_cluster_is_a_valid_cluster_the_operator_accepts(render, validate_cluster):
    (cluster,) = render(NON_DEFAULT)["example-fastswitchcluster.yaml"]
    validate_cluster(cluster)
    parsed = parse_spec(cluster["metadata"]["name"], cluster["metadata"]["namespace"],
                        cluster["spec"], Images("w", "f", "s", "k", "r", "IfNotPresent", ()))
    assert parsed.workers.replicas == 2 and parsed.scheduler.policy == "fcfs"
    assert parsed.frontend.autoscaling.max_replicas == 5
    assert "example-fastswitchcluster.yaml" not in render()


def test_the_default_example_cluster_is_a_light_smoke_test(render, validate_cluster):
    (cluster,) = render({"exampleCluster": {"enabled": True}})["example-fastswitchcluster.yaml"]
    validate_cluster(cluster)
    parsed = parse_spec(cluster["metadata"]["name"], cluster["metadata"]["namespace"],
                        cluster["spec"], Images("w", "f", "s", "k", "r", "IfNotPresent", ()))
    assert parsed.workers.gpus == 0
    assert parsed.frontend.replicas == 1 and parsed.frontend.autoscaling is None


def test_existing_service_account_is_used_as_is(render):
    manifests = render({"operator": {"serviceAccount": {"create": False, "name": "ops"}}})
    assert "operator-serviceaccount.yaml" not in manifests
    assert operator_deployment(manifests)["spec"]["template"]["spec"]["serviceAccountName"] == "ops"


def test_labels_are_recommended_and_selectors_minimal(render):
    for doc in all_docs(render(NON_DEFAULT)):
        assert RECOMMENDED_KEYS <= set(doc["metadata"]["labels"]), doc["kind"]
    deployment = operator_deployment(render())
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert set(selector) == SELECTOR_KEYS
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def granted_by(rules):
    return {(group, resource): set(rule["verbs"])
            for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}


@pytest.mark.parametrize(("values", "template"), [
    ({}, "operator-role.yaml"),
    ({"operator": {"watch": {"clusterWide": True}}}, "operator-clusterrole.yaml"),
], ids=["namespaced", "cluster-wide"])
def test_rbac_is_least_privilege(render, values, template):
    (role,) = render(values)[template]
    granted = granted_by(role["rules"])
    assert not any("*" in key or "*" in verbs for key, verbs in granted.items())
    resources = {resource for _, resource in granted}
    assert not resources & {"pods", "customresourcedefinitions", "namespaces"}
    assert granted["fastswitch.io", "fastswitchclusters"] == {"get", "list", "watch", "patch"}
    assert granted["fastswitch.io", "fastswitchclusters/status"] == {"get", "patch"}
    assert granted["", "persistentvolumeclaims"] == {"get"}
    # Secrets it generates are created once and never listed, watched, changed or deleted.
    assert granted["", "secrets"] == {"get", "create"}
    assert granted["networking.k8s.io", "networkpolicies"] == {
        "get", "list", "create", "patch", "delete"}
    # The frontends' autoscaler: created, changed and deleted with spec.frontend.autoscaling.
    assert granted["autoscaling", "horizontalpodautoscalers"] == {
        "get", "list", "create", "patch", "delete"}


def test_operator_runs_unprivileged_and_is_probed(render):
    pod = operator_deployment(render())["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


@pytest.mark.parametrize("values", [
    {"replicas": 2},
    {"operator": {"logLevel": "chatty"}},
    {"operator": {"watch": {"namespaces": ["Team_A"]}}},
    {"operator": {"watchNamespaces": ["team-a"]}},
    {"operator": {"watch": {"clusterWide": True, "namespaces": ["team-a"]}}},
    {"operator": {"watch": {"clusterWide": "yes"}}},
    {"operator": {"networkPolicy": {"enabled": "yes"}}},
    {"operator": {"healthPort": "8080"}},
    {"operator": {"image": {"tag": "latest", "registry": "x"}}},
    {"images": {"pullPolicy": "Sometimes"}},
    {"exampleCluster": {"enabled": "yes"}},
    {"exampleCluster": {"name": "a-name-that-is-far-too-long-for-its-children-names"}},
    {"exampleCluster": {"spec": "tiny"}},
], ids=lambda v: str(v)[:60])
def test_values_outside_the_schema_are_rejected(chart, values):
    with pytest.raises(helm.HelmValuesError, match="don't meet the specifications of the schema"):
        chart.render(values, name="fs", namespace="fastswitch-system")


def test_notes_tell_the_user_what_to_do_next(chart):
    def notes(values, namespace="fastswitch-system"):
        rendered = chart.render(values, name="fs", namespace=namespace)
        return rendered["fastswitch/templates/NOTES.txt"]

    default = notes({})
    assert "serves\nFastSwitchClusters in fastswitch-system." in default
    assert "kubectl -n fastswitch-system apply -f -" in default
    assert "kubectl -n fastswitch-system get fsc demo -w" in default
    assert "kubectl -n fastswitch-system scale fsc/demo --replicas=2" in default
    assert "fastswitch generate --addr 127.0.0.1:50051" in default
    # Clients call the frontends: the scheduler's port is internal.
    assert "port-forward svc/demo-frontend 50051:50051" in default
    assert "demo-frontend.fastswitch-system.svc:50051" in default
    assert "svc/demo-scheduler" not in default
    # The OpenAI-compatible API, on the frontends' Service too.
    assert "port-forward svc/demo-frontend 8000:8000" in default
    assert "base URL http://127.0.0.1:8000/v1" in default
    example = notes({"exampleCluster": {"enabled": True, "name": "smoke"}}, namespace="ml")
    assert "kubectl -n ml get fsc smoke -w" in example
    # Clusters go where the operator looks for them.
    watched = notes({"operator": {"watch": {"namespaces": ["a", "b"]}}}, namespace="ml")
    assert "FastSwitchClusters in a, b." in watched
    assert "kubectl -n a get fsc demo -w" in watched
    everywhere = notes({"operator": {"watch": {"clusterWide": True}}}, namespace="ml")
    assert "FastSwitchClusters in every namespace." in everywhere
