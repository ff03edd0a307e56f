"""The commands both engines (the model's and the simulated one) take between steps: add,
preempt, resume, rank, abort a request, evict a conversation. Torch-free bookkeeping over the
engine's request table, batch scheduler, KV manager, switches and counters, so the two engines
answer every command alike."""

from __future__ import annotations

from fastswitch_worker.engine.errors import check_new_request
from fastswitch_worker.engine.sequence import (
    FinishReason,
    Request,
    RequestStatus,
    SamplingParams,
    StopConditions,
)
from fastswitch_worker.engine.step_report import request_output


class RequestCommands:
    """Mixin. The engine provides: `requests` (id -> Request, until done and reported),
    `scheduler` (BatchScheduler), `kv` (KVManager), `switches`, `copies`, `counters`,
    `model_config`, `max_model_len`, `block_size` and `_pending_outputs`."""

    def add_request(self, request_id: str, prompt_token_ids: list[int], *,
                    sampling: SamplingParams | None = None, stop: StopConditions | None = None,
                    conversation_id: str = "", client_priority: int = 0) -> Request:
        """Mutates: queues a request. Raises InvalidRequestError for what cannot be served."""
        stop = stop or StopConditions()
        check_new_request(request_id, prompt_token_ids, stop.max_tokens, live_ids=self.requests,
                          vocab_size=self.model_config.vocab_size,
                          max_model_len=self.max_model_len,
                          kv_capacity_tokens=self.kv.layout.num_gpu_blocks * self.block_size)
        request = Request(request_id, list(prompt_token_ids), sampling or SamplingParams(), stop,
                          conversation_id=conversation_id, client_priority=client_priority)
        self.requests[request_id] = request
        self.scheduler.add(request)
        self.counters.num_reused_prompt_tokens += request.num_reused_tokens
        if request.num_reused_tokens:
            self.counters.num_reuse_hits += 1
        return request

    def preempt(self, request_id: str) -> None:
        """Mutates: the request leaves the GPU at the next step (its KV moves to host)."""
        self.scheduler.request_preempt(self._live(request_id))

    def resume(self, request_id: str) -> None:
        """Mutates: the request returns to the GPU at the next step where it fits."""
        self.scheduler.request_resume(self._live(request_id))

    def update_ranks(self, ranks: dict[str, int]) -> None:
        """Mutates: the cluster scheduler's ranks (UpdatePriorities), used when the engine
        itself must preempt (KV exhausted). Ids of requests this engine does not hold
        (finished meanwhile) are ignored, so the table never outgrows the live requests."""
        self.scheduler.update_ranks({
            request_id: rank for request_id, rank in ranks.items()
            if (request := self.requests.get(request_id)) is not None
            and not request.status.is_done})

    def evict_conversation(self, conversation_id: str) -> bool:
        """Mutates: frees a conversation's host KV; False if not held."""
        return self.kv.evict_conversation(conversation_id)

    def abort(self, request_id: str) -> bool:
        """Mutates: stops a request; its KV is freed now or when its copy completes."""
        request = self.requests.get(request_id)
        if request is None or request.status.is_done:
            return False
        self.scheduler.remove(request, RequestStatus.ABORTED)
        request.finish_reason = FinishReason.ABORTED
        self._forget_sampling(request_id)
        self._pending_outputs.append(request_output(request, 0))
        self.switches.release_if_done(request)
        return True

    def _forget_sampling(self, request_id: str) -> None:
        """A request's sampling state ends (the model's engine keeps per-request generators)."""

    def _live(self, request_id: str) -> Request:
        request = self.requests.get(request_id)
        if request is None or request.status.is_done:
            raise KeyError(f"no live request {request_id!r}")
        return request

    def has_unfinished_requests(self) -> bool:
        return (any(not r.status.is_done for r in self.requests.values())
                or self.copies.num_inflight > 0)

    def has_work(self) -> bool:
        """Whether step() would do anything: compute, copies to apply, outputs to emit.
        Requests parked in host memory wait for a resume and are no work by themselves."""
        return (self.scheduler.has_work() or self.copies.num_inflight > 0
                or bool(self._pending_outputs))
