"""A FastSwitchCluster's status, computed from its children (pure functions).

Conditions follow the Kubernetes convention (type, status, reason, message,
lastTransitionTime, observedGeneration); lastTransitionTime moves only when status flips.
- Reconciled: the spec of observedGeneration is valid and its children are applied.
- WorkersReady: every desired worker is up to date and SERVING.
- Ready: Reconciled, and every component (workers, frontends, scheduler, kvstore, Redis) is
  ready.
`frontend` reports the frontends' Deployment as it is: under a HorizontalPodAutoscaler its
desired count is the autoscaler's choice, not spec.frontend.replicas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastswitch_operator import names

RECONCILED = "Reconciled"
WORKERS_READY = "WorkersReady"
READY = "Ready"

PENDING, PROGRESSING, READY_PHASE, FAILED = "Pending", "Progressing", "Ready", "Failed"


@dataclass(frozen=True)
class WorkloadState:
    """Readiness of one Deployment or StatefulSet, read from its status."""

    desired: int
    replicas: int
    ready: int
    is_current: bool  # the controller has seen the latest spec and updated every pod

    @classmethod
    def of(cls, workload: Mapping[str, Any] | None) -> WorkloadState:
        """The state of a live workload; a missing one has nothing ready."""
        if workload is None:
            return cls(desired=1, replicas=0, ready=0, is_current=False)
        desired = int((workload.get("spec") or {}).get("replicas", 1))
        status = workload.get("status") or {}
        generation = (workload.get("metadata") or {}).get("generation")
        seen = generation is None or status.get("observedGeneration", 0) >= generation
        return cls(
            desired=desired,
            replicas=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            is_current=seen and int(status.get("updatedReplicas") or 0) >= desired,
        )

    @property
    def is_ready(self) -> bool:
        return self.is_current and self.ready >= self.desired


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


def merge_conditions(previous: list[Mapping[str, Any]], new: list[Condition],
                     generation: int, now: str) -> list[dict[str, Any]]:
    """`new` as status conditions, keeping each one's lastTransitionTime if it did not flip."""
    before = {c.get("type"): c for c in previous or []}
    result = []
    for condition in new:
        value = "True" if condition.status else "False"
        old = before.get(condition.type) or {}
        changed = old.get("status") != value
        result.append({
            "type": condition.type,
            "status": value,
            "reason": condition.reason,
            "message": condition.message,
            "observedGeneration": generation,
            "lastTransitionTime": now if changed else old.get("lastTransitionTime", now),
        })
    return result


def _waiting_for(component: str, state: WorkloadState) -> str:
    if component == names.FRONTEND:
        return f"frontends ({state.ready}/{state.desired} ready)"
    return component


def _phase(is_ready: bool, states: Mapping[str, WorkloadState]) -> str:
    if is_ready:
        return READY_PHASE
    if not any(state.ready for state in states.values()):
        return PENDING
    return PROGRESSING


def build_status(*, cluster_name: str, namespace: str, generation: int, desired_workers: int,
                 states: Mapping[str, WorkloadState], previous: Mapping[str, Any],
                 now: str) -> dict[str, Any]:
    """Status of a cluster whose children for `generation` are applied.

    `states` maps each component that should run (names.WORKER, names.FRONTEND, ...) to its
    workload's state.
    """
    workers = states[names.WORKER]
    waiting = [_waiting_for(c, s) for c, s in states.items()
               if c != names.WORKER and not s.is_ready]
    workers_ready = workers.is_ready and workers.ready >= desired_workers
    if not workers_ready:
        waiting.insert(0, f"workers ({workers.ready}/{desired_workers} ready)")
    is_ready = not waiting
    conditions = [
        Condition(RECONCILED, True, "Applied", "children are applied for this generation"),
        Condition(WORKERS_READY, workers_ready,
                  "WorkersReady" if workers_ready else "WorkersNotReady",
                  f"{workers.ready}/{desired_workers} workers ready"),
        Condition(READY, is_ready, "Ready" if is_ready else "Waiting",
                  "all components are ready" if is_ready else "waiting for " + ", ".join(waiting)),
    ]
    frontend = states[names.FRONTEND]
    return {
        "phase": _phase(is_ready, states),
        "observedGeneration": generation,
        "conditions": merge_conditions(previous.get("conditions", []), conditions, generation, now),
        "workers": {
            "desired": desired_workers,
            "replicas": workers.replicas,
            "ready": workers.ready,
            "selector": names.label_selector(cluster_name, names.WORKER),
        },
        "frontend": {"desired": frontend.desired, "replicas": frontend.replicas,
                     "ready": frontend.ready},
        "endpoints": {
            "frontend": names.frontend_address(cluster_name, namespace),
            "scheduler": names.scheduler_address(cluster_name, namespace),
            "kvstore": names.kvstore_address(cluster_name, namespace),
            "workers": names.workers_address(cluster_name, namespace),
        },
    }


def not_applied_status(*, generation: int, phase: str, reason: str, message: str,
                       previous: Mapping[str, Any], now: str) -> dict[str, Any]:
    """Status of a cluster whose spec was not applied (invalid: FAILED, or not yet: PENDING).

    Children, if any, are left as an earlier generation made them.
    """
    conditions = [
        Condition(RECONCILED, False, reason, message),
        Condition(READY, False, reason, message),
    ]
    kept = [c for c in previous.get("conditions", []) if c.get("type") == WORKERS_READY]
    return {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": kept + merge_conditions(previous.get("conditions", []), conditions,
                                              generation, now),
    }


def changes(current: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The top-level status fields of `new` that differ from `current` (a merge patch)."""
    current = current or {}
    return {key: value for key, value in new.items() if current.get(key) != value}


def is_ready(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == READY and c.get("status") == "True"
               for c in status.get("conditions", []))


def waiting_message(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions", []):
        if condition.get("type") == READY:
            return str(condition.get("message", ""))
    return ""
