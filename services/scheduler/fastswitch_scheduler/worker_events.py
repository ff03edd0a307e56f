"""Reads a worker's StepEvent against the request table: counts the tokens each request got
(the tokens themselves went to its frontend), charges the tenants (output tokens as reported,
the reused part of a prompt given back: counters.py), records the state changes
the worker made on its own, and returns what the scheduler must do next (finish a request, or
move it elsewhere). It changes no table
membership itself: the core applies the outcomes, so this module needs nothing from it."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_scheduler.counters import TenantCounters
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase

STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}
PREEMPTED_STATES = (common_pb2.REQUEST_STATE_SWAPPING_OUT, common_pb2.REQUEST_STATE_SWAPPED)


@dataclass(frozen=True)
class Finish:
    """The request is done: it completed on the worker (failure None: its frontend has the
    last tokens already), or it failed with `failure`."""

    request: ClusterRequest
    failure: Failure | None = None


@dataclass(frozen=True)
class Move:
    """The worker gave the request up (draining, lost its engine...): run it elsewhere."""

    request: ClusterRequest
    reason: str


Outcome = Finish | Move


def read_step_event(event: worker_pb2.StepEvent, worker_id: str, requests: RequestTable,
                    counters: TenantCounters) -> list[Outcome]:
    """Mutates the requests' progress and the tenants' counters. Returns at most one outcome
    per request, in event order."""
    outcomes: list[Outcome] = []
    decided: set[str] = set()

    def of_worker(request_id: str) -> ClusterRequest | None:
        request = requests.get(request_id)
        if request is None or request.worker_id != worker_id or request_id in decided:
            return None  # finished or cancelled meanwhile, moved elsewhere, or decided above
        return request

    def decide(outcome: Outcome) -> None:
        decided.add(outcome.request.request_id)
        outcomes.append(outcome)

    # The hot loop (one entry per running request per message): counts first, each tenant
    # charged once per event.
    served: dict[str, list] = {}  # tenant name -> [tenant, generated tokens]
    for progress in event.progress:
        request = requests.get(progress.request_id)
        if request is None or request.worker_id != worker_id:
            continue  # finished or cancelled meanwhile, or moved elsewhere
        if not request.is_reuse_refunded:
            # The prompt was charged at admission (here only for a request adopted from a
            # worker before this scheduler admitted it); what a turn reused costs nothing.
            counters.charge_admission(request)
            counters.refund_reused_prompt(request, progress.num_reused_prompt_tokens)
        request.num_generated_tokens += progress.num_new_tokens
        tally = served.get(request.tenant.name)
        if tally is None:
            tally = served[request.tenant.name] = [request.tenant, 0]
        tally[1] += progress.num_new_tokens
        # A request the worker aborted on its own ends by its state change (a failure to
        # report, or a move), which may come later in the same coalesced event.
        if progress.finish_reason not in (common_pb2.FINISH_REASON_UNSPECIFIED,
                                          common_pb2.FINISH_REASON_ABORTED):
            decide(Finish(request))
    for tenant, num_generated_tokens in served.values():
        counters.charge_output(tenant, num_generated_tokens)
    for change in event.state_changes:
        if (request := of_worker(change.request_id)) is None:
            continue
        if change.error_code:
            code = STATUS_BY_CODE.get(change.error_code, grpc.StatusCode.INTERNAL)
            if code is grpc.StatusCode.UNAVAILABLE:
                decide(Move(request, f"worker {worker_id}: {change.reason}"))
            else:
                decide(Finish(request, Failure(code, change.reason)))
        elif change.state in PREEMPTED_STATES and request.phase is Phase.RUNNING:
            request.mark_phase(Phase.PREEMPTED)  # the worker ran out of KV and chose it
        elif change.state == common_pb2.REQUEST_STATE_ABORTED:
            decide(Move(request, f"worker {worker_id} aborted the request"))
    return outcomes
