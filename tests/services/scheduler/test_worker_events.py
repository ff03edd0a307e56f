"""read_step_event: a worker's step event against the request table, without a core."""

from __future__ import annotations

import grpc

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_scheduler.counters import TenantCounters
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Phase
from fastswitch_scheduler.worker_events import Finish, Move, read_step_event


def table_with(*specs: tuple[str, str]) -> tuple[RequestTable, TenantCounters]:
    """Requests (request id, worker id) of tenant alice, running, with 3 prompt tokens."""
    tenants = TenantRegistry(tenants={"alice": TenantState("alice")})
    table = RequestTable()
    for request_id, worker_id in specs:
        table.add(ClusterRequest(
            request_id=request_id, client_request_id=request_id, tenant=tenants.tenants["alice"],
            frontend_id="f0", num_prompt_tokens=3, max_tokens=4, worker_id=worker_id,
            phase=Phase.RUNNING))
    return table, TenantCounters(tenants)


def progress(request_id: str, num_new_tokens: int, finish=common_pb2.FINISH_REASON_UNSPECIFIED,
             *, num_reused: int = 0):
    return worker_pb2.RequestProgress(request_id=request_id, num_new_tokens=num_new_tokens,
                                      finish_reason=finish, num_prompt_tokens=3,
                                      num_reused_prompt_tokens=num_reused)


def test_counts_charge_and_a_finished_request_is_returned_not_removed():
    table, tenants = table_with(("r1", "w0"), ("r2", "w0"))
    event = worker_pb2.StepEvent(progress=[progress("r1", 1), progress("r2", 2, common_pb2.FINISH_REASON_LENGTH)])
    outcomes = read_step_event(event, "w0", table, tenants)
    assert [type(o) for o in outcomes] == [Finish] and outcomes[0].request.request_id == "r2"
    assert outcomes[0].failure is None  # completed: its frontend has the last tokens
    assert table.get("r2") is not None  # the caller applies the outcome
    assert (table.get("r1").num_generated_tokens, table.get("r2").num_generated_tokens) == (1, 2)
    alice = tenants.registry.tenants["alice"]
    assert (alice.num_served_prompt_tokens, alice.num_served_generated_tokens) == (6, 3)


def test_the_prompt_is_charged_once_without_the_reused_part():
    table, tenants = table_with(("r1", "w0"))
    read_step_event(worker_pb2.StepEvent(progress=[progress("r1", 1, num_reused=2)]), "w0", table, tenants)
    read_step_event(worker_pb2.StepEvent(progress=[progress("r1", 1, num_reused=2)]), "w0", table, tenants)
    alice = tenants.registry.tenants["alice"]
    assert (alice.num_served_prompt_tokens, alice.num_served_generated_tokens) == (1, 2)


def test_other_workers_events_are_ignored_and_one_outcome_per_request():
    table, tenants = table_with(("r1", "w0"), ("r2", "w1"))
    internal = grpc.StatusCode.INTERNAL.value[0]
    event = worker_pb2.StepEvent(
        progress=[progress("r1", 1, common_pb2.FINISH_REASON_STOP), progress("r2", 1)],
        state_changes=[worker_pb2.RequestStateChange(request_id="r1", error_code=internal, reason="x"),
                       worker_pb2.RequestStateChange(request_id="r2", error_code=internal, reason="x")])
    outcomes = read_step_event(event, "w0", table, tenants)
    assert len(outcomes) == 1 and isinstance(outcomes[0], Finish)
    assert outcomes[0].failure is None  # the first decision stands
    assert table.get("r2").num_generated_tokens == 0


def test_refusals_map_to_moves_or_definite_statuses():
    table, tenants = table_with(("r1", "w0"), ("r2", "w0"), ("r3", "w0"), ("r4", "w0"))
    code = {name: getattr(grpc.StatusCode, name).value[0] for name in ("UNAVAILABLE", "INTERNAL")}
    event = worker_pb2.StepEvent(state_changes=[
        worker_pb2.RequestStateChange(request_id="r1", error_code=code["UNAVAILABLE"], reason="draining"),
        worker_pb2.RequestStateChange(request_id="r2", error_code=code["INTERNAL"], reason="step failed"),
        worker_pb2.RequestStateChange(request_id="r3", error_code=99, reason="?"),
        worker_pb2.RequestStateChange(request_id="r4", state=common_pb2.REQUEST_STATE_SWAPPED)])
    outcomes = {o.request.request_id: o for o in read_step_event(event, "w0", table, tenants)}
    assert isinstance(outcomes["r1"], Move) and "draining" in outcomes["r1"].reason
    assert outcomes["r2"].failure.code is grpc.StatusCode.INTERNAL
    assert outcomes["r3"].failure.code is grpc.StatusCode.INTERNAL  # never UNKNOWN
    assert "r4" not in outcomes and table.get("r4").phase is Phase.PREEMPTED


def test_an_abort_the_worker_made_ends_by_its_state_change_not_by_its_last_count():
    """A coalesced event may hold the aborted request's last count before the failure that
    explains it: the failure decides."""
    table, tenants = table_with(("r1", "w0"))
    internal = grpc.StatusCode.INTERNAL.value[0]
    event = worker_pb2.StepEvent(
        progress=[progress("r1", 0, common_pb2.FINISH_REASON_ABORTED)],
        state_changes=[worker_pb2.RequestStateChange(request_id="r1", error_code=internal,
                                                     reason="step failed")])
    (outcome,) = read_step_event(event, "w0", table, tenants)
    assert isinstance(outcome, Finish) and outcome.failure.code is grpc.StatusCode.INTERNAL
