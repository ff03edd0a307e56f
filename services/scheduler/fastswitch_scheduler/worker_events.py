"""Reads a worker's StepEvent against the request table: streams tokens to the clients,
charges the tenants, records the state changes the worker made on its own, and returns what
the scheduler must do next (finish a request, or move it elsewhere). It changes no table
membership itself: the core applies the outcomes, so this module needs nothing from it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, worker_pb2
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.tenants import TenantRegistry

STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}
PREEMPTED_STATES = (common_pb2.REQUEST_STATE_SWAPPING_OUT, common_pb2.REQUEST_STATE_SWAPPED)


@dataclass(frozen=True)
class Finish:
    """The request is done: end its stream with `final`."""

    request: ClusterRequest
    final: scheduler_pb2.GenerateResponse | Failure


@dataclass(frozen=True)
class Move:
    """The worker gave the request up (draining, lost its engine...): run it elsewhere."""

    request: ClusterRequest
    reason: str


Outcome = Finish | Move


def read_step_event(event: worker_pb2.StepEvent, worker_id: str, requests: RequestTable,
                    tenants: TenantRegistry) -> list[Outcome]:
    """Mutates the requests' progress and the tenants' counters; pushes streamed responses.
    Returns at most one outcome per request, in event order."""
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

    for output in event.outputs:
        if (request := of_worker(output.request_id)) is not None:
            final = _apply_output(request, output, tenants)
            if final is not None:
                decide(Finish(request, final))
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


def _apply_output(request: ClusterRequest, output: worker_pb2.RequestOutput,
                  tenants: TenantRegistry) -> scheduler_pb2.GenerateResponse | None:
    """Mutates: streams the output's tokens; returns the final response when it finishes."""
    now = time.monotonic()
    if not request.is_prompt_charged:
        request.is_prompt_charged = True
        request.num_reused_prompt_tokens = output.usage.num_reused_prompt_tokens
        computed = output.usage.num_prompt_tokens - output.usage.num_reused_prompt_tokens
        tenants.charge(request.tenant, num_prompt_tokens=computed, num_generated_tokens=0)
    if output.token_ids and request.first_token_s is None:
        request.first_token_s = now
    request.generated_token_ids.extend(output.token_ids)
    tenants.charge(request.tenant, num_prompt_tokens=0, num_generated_tokens=len(output.token_ids))
    text = request.detokenizer.feed(list(output.token_ids))
    response = scheduler_pb2.GenerateResponse(
        request_id=request.client_request_id, token_ids=output.token_ids,
        logprobs=output.logprobs)
    if output.finish_reason:
        response.text = text + request.detokenizer.flush()
        response.finish_reason = output.finish_reason
        response.usage.CopyFrom(common_pb2.Usage(
            num_prompt_tokens=len(request.prompt_token_ids),
            num_generated_tokens=len(request.generated_token_ids),
            num_reused_prompt_tokens=request.num_reused_prompt_tokens))
        response.timing.CopyFrom(_timing(request, now))
        return response
    response.text = text
    request.responses.put_nowait(response)
    return None


def _timing(request: ClusterRequest, now: float) -> common_pb2.RequestTiming:
    def ms_since_arrival(t: float | None) -> float:
        return 0.0 if t is None else (t - request.arrival_s) * 1e3

    return common_pb2.RequestTiming(
        queue_ms=ms_since_arrival(request.first_admit_s), ttft_ms=ms_since_arrival(request.first_token_s),
        e2e_ms=(now - request.arrival_s) * 1e3, num_preemptions=request.num_preemptions,
        swapped_ms=request.swapped_ms)
