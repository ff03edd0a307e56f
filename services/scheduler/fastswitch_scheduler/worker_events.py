"""Applies a worker's StepEvent to the scheduler's requests: tokens to clients, VTC charges,
state changes the worker made on its own, refusals."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, worker_pb2
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase

if TYPE_CHECKING:
    from fastswitch_scheduler.core import SchedulerCore
    from fastswitch_scheduler.worker_link import WorkerLink

STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}
PREEMPTED_STATES = (common_pb2.REQUEST_STATE_SWAPPING_OUT, common_pb2.REQUEST_STATE_SWAPPED)


def apply_step_event(core: SchedulerCore, link: WorkerLink, event: worker_pb2.StepEvent) -> None:
    """Mutates the core's requests and tenants; pushes responses to the clients' streams."""
    for output in event.outputs:
        request = core.requests.get(output.request_id)
        if request is not None and request.worker_id == link.worker_id:
            _apply_output(core, request, output)
    for change in event.state_changes:
        request = core.requests.get(change.request_id)
        if request is None or request.worker_id != link.worker_id:
            continue  # finished or cancelled meanwhile, or moved to another worker
        if change.error_code:
            code = STATUS_BY_CODE.get(change.error_code, grpc.StatusCode.INTERNAL)
            if code is grpc.StatusCode.UNAVAILABLE:
                core.move_or_fail(request, f"worker {link.worker_id}: {change.reason}")
            else:
                core.finish(request, Failure(code, change.reason))
        elif change.state in PREEMPTED_STATES and request.phase is Phase.RUNNING:
            request.mark_phase(Phase.PREEMPTED)  # the worker ran out of KV and chose it
        elif change.state == common_pb2.REQUEST_STATE_ABORTED:
            core.move_or_fail(request, f"worker {link.worker_id} aborted the request")


def _apply_output(core: SchedulerCore, request: ClusterRequest, output: worker_pb2.RequestOutput) -> None:
    now = time.monotonic()
    if not request.is_prompt_charged:
        request.is_prompt_charged = True
        request.num_reused_prompt_tokens = output.usage.num_reused_prompt_tokens
        computed = output.usage.num_prompt_tokens - output.usage.num_reused_prompt_tokens
        core.tenants.charge(request.tenant, num_prompt_tokens=computed, num_generated_tokens=0)
    if output.token_ids and request.first_token_s is None:
        request.first_token_s = now
    request.generated_token_ids.extend(output.token_ids)
    core.tenants.charge(request.tenant, num_prompt_tokens=0,
                        num_generated_tokens=len(output.token_ids))
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
        core.finish(request, response)
    else:
        response.text = text
        request.responses.put_nowait(response)


def _timing(request: ClusterRequest, now: float) -> common_pb2.RequestTiming:
    def ms_since_arrival(t: float | None) -> float:
        return 0.0 if t is None else (t - request.arrival_s) * 1e3

    return common_pb2.RequestTiming(
        queue_ms=ms_since_arrival(request.first_admit_s), ttft_ms=ms_since_arrival(request.first_token_s),
        e2e_ms=(now - request.arrival_s) * 1e3, num_preemptions=request.num_preemptions,
        swapped_ms=request.swapped_ms)
