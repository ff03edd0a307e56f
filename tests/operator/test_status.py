"""Status and conditions, computed from the children's states."""

from __future__ import annotations

from fastswitch_operator import names, status
from fastswitch_operator.status import WorkloadState

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def workload(replicas, ready, generation=3, observed=3, updated=None):
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": ready, "observedGeneration": observed,
                   "updatedReplicas": replicas if updated is None else updated},
    }


def states(workers, others=True, frontend=None):
    ready = WorkloadState.of(workload(1, 1 if others else 0))
    frontend = frontend or WorkloadState.of(workload(2, 2 if others else 0))
    return {names.WORKER: workers, names.FRONTEND: frontend, names.SCHEDULER: ready,
            names.KVSTORE: ready}


def build(workers, desired=2, previous=None, now=T0, others=True, frontend=None):
    return status.build_status(cluster_name="demo", namespace="ns", generation=4,
                               desired_workers=desired, states=states(workers, others, frontend),
                               previous=previous or {}, now=now)


def conditions(built):
    return {c["type"]: c for c in built["conditions"]}


def test_workload_state_reads_deployment_and_statefulset_status():
    assert WorkloadState.of(workload(2, 2)).is_ready
    assert not WorkloadState.of(workload(2, 1)).is_ready
    assert not WorkloadState.of(workload(2, 2, generation=4, observed=3)).is_ready  # not seen yet
    assert not WorkloadState.of(workload(2, 2, updated=1)).is_ready  # rollout in progress
    assert not WorkloadState.of(None).is_ready
    assert WorkloadState.of({"spec": {"replicas": 0}}).is_ready


def test_ready_when_every_component_is_ready():
    built = build(WorkloadState.of(workload(2, 2)))
    assert built["phase"] == "Ready"
    assert conditions(built)["Ready"]["status"] == "True"
    assert conditions(built)["WorkersReady"]["message"] == "2/2 workers ready"
    assert built["workers"] == {"desired": 2, "replicas": 2, "ready": 2,
                                "selector": names.label_selector("demo", names.WORKER)}
    assert built["frontend"] == {"desired": 2, "replicas": 2, "ready": 2}
    assert built["endpoints"]["frontend"] == "demo-frontend.ns.svc:50051"
    assert built["endpoints"]["scheduler"] == "demo-scheduler.ns.svc:50052"
    assert all(c["observedGeneration"] == 4 for c in built["conditions"])


def test_progressing_while_workers_are_missing():
    built = build(WorkloadState.of(workload(2, 1)))
    assert built["phase"] == "Progressing"
    assert conditions(built)["WorkersReady"]["status"] == "False"
    assert conditions(built)["Ready"]["message"] == "waiting for workers (1/2 ready)"


def test_pending_until_anything_is_ready():
    built = build(WorkloadState.of(workload(2, 0)), others=False)
    assert built["phase"] == "Pending"
    assert conditions(built)["Ready"]["message"] == (
        "waiting for workers (0/2 ready), frontends (0/2 ready), scheduler, kvstore")


def test_frontends_report_what_their_deployment_has_and_are_waited_for():
    # An autoscaler asked for 4: the Deployment's count, whatever spec.frontend.replicas says.
    built = build(WorkloadState.of(workload(2, 2)), frontend=WorkloadState.of(workload(4, 3)))
    assert built["frontend"] == {"desired": 4, "replicas": 4, "ready": 3}
    assert built["phase"] == "Progressing"
    assert conditions(built)["WorkersReady"]["status"] == "True"
    assert conditions(built)["Ready"]["message"] == "waiting for frontends (3/4 ready)"


def test_desired_workers_come_from_the_cluster_not_the_statefulset():
    # Just scaled from 2 to 3: the StatefulSet still reports 2 of 2.
    built = build(WorkloadState.of(workload(2, 2)), desired=3)
    assert conditions(built)["WorkersReady"]["status"] == "False"


def test_transition_time_moves_only_when_a_condition_flips():
    first = build(WorkloadState.of(workload(2, 1)), now=T0)
    same = build(WorkloadState.of(workload(2, 1)), previous=first, now=T1)
    assert conditions(same)["WorkersReady"]["lastTransitionTime"] == T0
    flipped = build(WorkloadState.of(workload(2, 2)), previous=first, now=T1)
    assert conditions(flipped)["WorkersReady"]["lastTransitionTime"] == T1
    assert conditions(flipped)["Reconciled"]["lastTransitionTime"] == T0


def test_a_spec_that_was_not_applied_is_explained():
    before = build(WorkloadState.of(workload(2, 2)))
    failed = status.not_applied_status(generation=5, phase=status.FAILED, reason="InvalidSpec",
                                       message="invalid spec: boom", previous=before, now=T1)
    assert failed["phase"] == "Failed" and failed["observedGeneration"] == 5
    reconciled = conditions(failed)["Reconciled"]
    assert (reconciled["status"], reconciled["reason"], reconciled["message"]) == (
        "False", "InvalidSpec", "invalid spec: boom")
    assert conditions(failed)["WorkersReady"] == conditions(before)["WorkersReady"]
    assert not status.is_ready(failed)


def test_changes_keep_only_what_differs():
    built = build(WorkloadState.of(workload(2, 2)))
    assert status.changes(built, built) == {}
    assert status.changes({**built, "phase": "Pending"}, built) == {"phase": "Ready"}
    assert status.changes(None, built) == built
