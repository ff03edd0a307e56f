"""read_step_event: a worker's step event against the request table, without a core."""

from __future__ import annotations

import grpc

from fastswitch.tokenizer import ByteTokenizer, IncrementalDetokenizer
from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.tenants import TenantRegistry, TenantState
from fastswitch_scheduler.worker_events import Finish, Move, read_step_event


def table_with(*specs: tuple[str, str]) -> tuple[RequestTable, TenantRegistry]:
    """Requests (request id, worker id) of tenant alice, running, with 3 prompt tokens."""
    tenants = TenantRegistry(tenants={"alice": TenantState("alice")})
    table = RequestTable()
    for request_id, worker_id in specs:
        request = ClusterRequest(
            request_id=request_id, client_request_id=request_id, tenant=tenants.tenants["alice"],
            prompt_token_ids=[65, 66, 67], sampling=common_pb2.SamplingParams(),
            stop=common_pb2.StopConditions(max_tokens=4), worker_id=worker_id, phase=Phase.RUNNING)
        request.detokenizer = IncrementalDetokenizer(ByteTokenizer(384), prompt_token_ids=[65, 66, 67])
        table.add(request)
    return table, tenants


def output(request_id: str, token_ids: list[int], finish=common_pb2.FINISH_REASON_UNSPECIFIED):
    return worker_pb2.RequestOutput(request_id=request_id, token_ids=token_ids, finish_reason=finish,
                                    usage=common_pb2.Usage(num_prompt_tokens=3))


def test_tokens_stream_and_charge_and_a_finished_request_is_returned_not_removed():
    table, tenants = table_with(("r1", "w0"), ("r2", "w0"))
    event = worker_pb2.StepEvent(outputs=[output("r1", [72]), output("r2", [73, 74], common_pb2.FINISH_REASON_LENGTH)])
    outcomes = read_step_event(event, "w0", table, tenants)
    assert [type(o) for o in outcomes] == [Finish] and outcomes[0].request.request_id == "r2"
    assert outcomes[0].final.usage.num_generated_tokens == 2
    assert table.get("r2") is not None  # the caller applies the outcome
    streamed = table.get("r1").responses.get_nowait()
    assert list(streamed.token_ids) == [72] and streamed.text == "H"
    alice = tenants.tenants["alice"]
    assert (alice.num_served_prompt_tokens, alice.num_served_generated_tokens) == (6, 3)


def test_other_workers_events_are_ignored_and_one_outcome_per_request():
    table, tenants = table_with(("r1", "w0"), ("r2", "w1"))
    internal = grpc.StatusCode.INTERNAL.value[0]
    event = worker_pb2.StepEvent(
        outputs=[output("r1", [72], common_pb2.FINISH_REASON_STOP), output("r2", [1])],
        state_changes=[worker_pb2.RequestStateChange(request_id="r1", error_code=internal, reason="x"),
                       worker_pb2.RequestStateChange(request_id="r2", error_code=internal, reason="x")])
    outcomes = read_step_event(event, "w0", table, tenants)
    assert len(outcomes) == 1 and isinstance(outcomes[0], Finish)
    assert not isinstance(outcomes[0].final, Failure)  # the first decision stands
    assert table.get("r2").generated_token_ids == []


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
    assert outcomes["r2"].final.code is grpc.StatusCode.INTERNAL
    assert outcomes["r3"].final.code is grpc.StatusCode.INTERNAL  # never UNKNOWN
    assert "r4" not in outcomes and table.get("r4").phase is Phase.PREEMPTED
