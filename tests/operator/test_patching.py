"""Deciding what a live child needs: a merge patch or nothing."""

from __future__ import annotations

import json

from fastswitch_operator.patching import (
    LAST_APPLIED_ANNOTATION,
    last_applied,
    plan_patch,
    with_last_applied,
)

DESIRED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "demo", "namespace": "ns", "labels": {"app": "x"}},
    "spec": {
        "replicas": 2,
        "template": {"spec": {
            "nodeSelector": {"pool": "gpu"},
            "containers": [{"name": "c", "image": "i:1", "args": ["a"],
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
        }},
    },
}


def live_after_server_defaults(desired):
    """What the API server stores: everything sent plus defaults and bookkeeping."""
    live = json.loads(json.dumps(with_last_applied(desired)))
    live["metadata"].update(uid="u", resourceVersion="7", generation=1)
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    container = live["spec"]["template"]["spec"]["containers"][0]
    container.update(terminationMessagePath="/dev/termination-log", imagePullPolicy="IfNotPresent")
    container["resources"]["limits"]["cpu"] = "1000m"  # normalised by the server
    live["status"] = {"readyReplicas": 2}
    return live


def test_the_desired_manifest_records_itself():
    desired = with_last_applied(DESIRED)
    assert last_applied(desired) == DESIRED
    assert LAST_APPLIED_ANNOTATION not in DESIRED["metadata"].get("annotations", {})


def test_live_object_with_server_defaults_needs_no_patch():
    assert plan_patch(live_after_server_defaults(DESIRED), with_last_applied(DESIRED)) is None


def test_a_changed_field_is_patched_alone_with_the_new_record():
    desired = json.loads(json.dumps(DESIRED))
    desired["spec"]["replicas"] = 5
    patch = plan_patch(live_after_server_defaults(DESIRED), with_last_applied(desired))
    assert patch["spec"] == {"replicas": 5}
    assert last_applied({"metadata": patch["metadata"]}) == desired
    assert set(patch) == {"metadata", "spec"}


def test_a_changed_list_is_replaced_whole():
    desired = json.loads(json.dumps(DESIRED))
    desired["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    patch = plan_patch(live_after_server_defaults(DESIRED), with_last_applied(desired))
    assert patch["spec"]["template"]["spec"]["containers"] == desired["spec"]["template"]["spec"]["containers"]


def test_a_field_dropped_from_a_list_item_is_dropped_from_the_live_list():
    # A NetworkPolicy rule that stops naming its peers (allow every source again): the live
    # rule still "holds" the desired one, but it is not what was last applied.
    restricted = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "p", "namespace": "ns"},
                  "spec": {"ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 1}]}]}}
    live = json.loads(json.dumps(with_last_applied(restricted)))
    open_to_all = json.loads(json.dumps(restricted))
    del open_to_all["spec"]["ingress"][0]["from"]
    patch = plan_patch(live, with_last_applied(open_to_all))
    assert patch["spec"] == {"ingress": [{"ports": [{"port": 1}]}]}
    assert plan_patch(live, with_last_applied(restricted)) is None


def test_a_field_no_longer_desired_is_deleted_but_server_defaults_stay():
    desired = json.loads(json.dumps(DESIRED))
    del desired["spec"]["template"]["spec"]["nodeSelector"]
    patch = plan_patch(live_after_server_defaults(DESIRED), with_last_applied(desired))
    assert patch["spec"] == {"template": {"spec": {"nodeSelector": None}}}


def test_a_key_removed_from_a_map_is_deleted():
    desired = json.loads(json.dumps(DESIRED))
    desired["spec"]["template"]["spec"]["nodeSelector"] = {}
    patch = plan_patch(live_after_server_defaults(DESIRED), with_last_applied(desired))
    assert patch["spec"] == {"template": {"spec": {"nodeSelector": {"pool": None}}}}


def test_an_object_without_a_record_gets_what_is_missing():
    live = live_after_server_defaults(DESIRED)
    del live["metadata"]["annotations"]
    live["spec"]["replicas"] = 1
    patch = plan_patch(live, with_last_applied(DESIRED))
    assert patch["spec"] == {"replicas": 2}
    assert LAST_APPLIED_ANNOTATION in patch["metadata"]["annotations"]


def test_types_matter_except_between_numbers():
    live = live_after_server_defaults(DESIRED)
    live["spec"]["replicas"] = 2.0
    assert plan_patch(live, with_last_applied(DESIRED)) is None
    live["spec"]["replicas"] = "2"
    assert plan_patch(live, with_last_applied(DESIRED))["spec"] == {"replicas": 2}


def test_a_replica_count_no_longer_desired_is_handed_over_not_deleted():
    # Autoscaling turned on: the autoscaler owns the count from now on, starting where it is
    # (deleting it would have the API server default it to 1).
    autoscaled = json.loads(json.dumps(DESIRED))
    del autoscaled["spec"]["replicas"]
    live = live_after_server_defaults(DESIRED)
    patch = plan_patch(live, with_last_applied(autoscaled))
    assert "spec" not in patch
    assert last_applied({"metadata": patch["metadata"]}) == autoscaled
    # The autoscaler's later choices are left alone too.
    live = json.loads(json.dumps(with_last_applied(autoscaled)))
    live["spec"]["replicas"] = 7
    assert plan_patch(live, with_last_applied(autoscaled)) is None
