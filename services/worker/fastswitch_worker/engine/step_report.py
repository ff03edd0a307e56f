"""What both engines (the model's and the simulated one) report of a step: a request's new
tokens as a RequestOutput, and every status change since the last report. Pure Python (no
torch), shared so the two engines report exactly alike."""

from __future__ import annotations

from fastswitch_worker.engine.outputs import RequestOutput, StateChange, SwapCounters
from fastswitch_worker.engine.scheduler_output import SchedulerOutput
from fastswitch_worker.engine.sequence import Request, RequestStatus


def request_output(request: Request, num_new: int) -> RequestOutput:
    """The request's last `num_new` tokens (0: its end, e.g. after an abort)."""
    new_ids = request.output_token_ids[len(request.output_token_ids) - num_new:]
    new_logprobs = request.output_logprobs[len(request.output_logprobs) - num_new:] \
        if request.output_logprobs else []
    return RequestOutput(request.request_id, tuple(new_ids), tuple(new_logprobs),
                         request.finish_reason, request.num_prompt_tokens,
                         len(request.output_token_ids), request.num_reused_tokens)


class StatusReporter:
    """Which status each request was last reported in, and why changes nobody asked for
    happened (e.g. "kv_exhausted")."""

    def __init__(self) -> None:
        self._reported: dict[str, RequestStatus] = {}
        self._reasons: dict[str, str] = {}

    def count_preemptions(self, output: SchedulerOutput, counters: SwapCounters) -> None:
        """Mutates: the step's recomputes and the preemptions the engine made itself."""
        counters.num_recomputes += len(output.recomputed_ids)
        for request_id in output.kv_exhausted_ids:
            counters.num_kv_exhausted_preemptions += 1
            self._reasons[request_id] = "kv_exhausted"

    def changes(self, requests: dict[str, Request]) -> tuple[StateChange, ...]:
        """Mutates `requests` too: a request that is done and has no copy in flight leaves it
        once its final status is reported."""
        changes = []
        for request_id, request in list(requests.items()):
            if self._reported.get(request_id) is not request.status:
                self._reported[request_id] = request.status
                changes.append(StateChange(request_id, request.status,
                                           self._reasons.pop(request_id, "")))
            if request.status.is_done and request.num_inflight_copies == 0:
                del requests[request_id]
                del self._reported[request_id]
        return tuple(changes)
