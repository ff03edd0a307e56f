"""A client request as its frontend owns it: the prompt, the tokens streamed so far, the
client's stream, and where it runs. The scheduler sees only its counts (`submit_message`);
the worker gets its data (`stage_command`)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from fastswitch.tenants import TenantState
from fastswitch.tokenizer import IncrementalDetokenizer
from fastswitch.v1 import common_pb2, control_pb2, scheduler_pb2, worker_pb2
from fastswitch_frontend.timeline import Phase, Timeline

PREEMPTED_STATES = (common_pb2.REQUEST_STATE_SWAPPING_OUT, common_pb2.REQUEST_STATE_SWAPPED)


@dataclass(frozen=True)
class Failure:
    """Ends a client stream with a gRPC status."""

    code: grpc.StatusCode
    message: str


@dataclass(eq=False)
class FrontendRequest:
    request_id: str  # cluster-wide: this frontend's id and a counter
    client_request_id: str
    tenant: TenantState
    prompt_token_ids: list[int]
    sampling: common_pb2.SamplingParams
    stop: common_pb2.StopConditions  # max_tokens: the whole request's
    detokenizer: IncrementalDetokenizer
    conversation_id: str = ""  # as the client named it
    priority: int = 0
    worker_id: str | None = None  # where the scheduler placed it
    generated_token_ids: list[int] = field(default_factory=list)
    num_reused_prompt_tokens: int = 0
    arrival_s: float = field(default_factory=time.monotonic)
    first_running_s: float | None = None
    first_token_s: float | None = None
    num_preemptions: int = 0
    preempted_since_s: float | None = None
    swapped_ms: float = 0.0
    is_done: bool = False
    responses: asyncio.Queue = field(default_factory=asyncio.Queue)
    timeline: Timeline = field(init=False)  # where its time went, phase by phase

    def __post_init__(self) -> None:
        self.timeline = Timeline(self.arrival_s)

    @property
    def scoped_conversation_id(self) -> str:
        """The conversation id workers, the scheduler and the kvstore see: scoped to the
        tenant, so one tenant can neither reuse nor evict another's conversation KV."""
        return f"{self.tenant.name}:{self.conversation_id}" if self.conversation_id else ""

    def submit_message(self) -> control_pb2.SubmitRequest:
        return control_pb2.SubmitRequest(
            request_id=self.request_id, client_request_id=self.client_request_id,
            tenant=self.tenant.name, num_prompt_tokens=len(self.prompt_token_ids),
            num_generated_tokens=len(self.generated_token_ids), max_tokens=self.stop.max_tokens,
            conversation_id=self.scoped_conversation_id, priority=self.priority,
            worker_id=self.worker_id or "")

    def stage_command(self) -> worker_pb2.StageCommand:
        """What a worker needs to run the request: the prompt plus what was generated
        elsewhere before a move, and the tokens still allowed. Mutates the timeline only: a
        request is staged once the scheduler placed it, so the first stage ends its wait for
        a placement."""
        self.timeline.placed(time.monotonic())
        stop = common_pb2.StopConditions()
        stop.CopyFrom(self.stop)
        stop.max_tokens = self.stop.max_tokens - len(self.generated_token_ids)
        return worker_pb2.StageCommand(
            request_id=self.request_id,
            prompt_token_ids=self.prompt_token_ids + self.generated_token_ids,
            sampling=self.sampling, stop=stop, conversation_id=self.scoped_conversation_id,
            priority=self.priority)

    def note_state(self, state: int) -> None:
        """Mutates: the worker's state change, for the timing the final response reports."""
        now = time.monotonic()
        self.timeline.state(state, now)
        if state == common_pb2.REQUEST_STATE_RUNNING:
            if self.first_running_s is None:
                self.first_running_s = now
            if self.preempted_since_s is not None:
                self.swapped_ms += (now - self.preempted_since_s) * 1e3
                self.preempted_since_s = None
        elif state in PREEMPTED_STATES and self.preempted_since_s is None:
            self.num_preemptions += 1
            self.preempted_since_s = now

    def take_output(self, output: worker_pb2.RequestOutput) -> scheduler_pb2.GenerateResponse:
        """Mutates: the output's tokens join the request; returns the client's response (the
        final one, with usage and timing, when the output finishes the request)."""
        now = time.monotonic()
        if not self.generated_token_ids and not self.first_token_s:
            self.num_reused_prompt_tokens = output.usage.num_reused_prompt_tokens
        if output.token_ids and self.first_token_s is None:
            self.first_token_s = now
        self.generated_token_ids.extend(output.token_ids)
        text = self.detokenizer.feed(list(output.token_ids))
        response = scheduler_pb2.GenerateResponse(
            request_id=self.client_request_id, token_ids=output.token_ids,
            logprobs=output.logprobs, text=text)
        if output.finish_reason:
            response.text = text + self.detokenizer.flush()
            response.finish_reason = output.finish_reason
            response.usage.CopyFrom(common_pb2.Usage(
                num_prompt_tokens=len(self.prompt_token_ids),
                num_generated_tokens=len(self.generated_token_ids),
                num_reused_prompt_tokens=self.num_reused_prompt_tokens))
            self.timeline.state(common_pb2.REQUEST_STATE_FINISHED, now)
            response.timing.CopyFrom(self._timing(now))
        return response

    def _timing(self, now: float) -> common_pb2.RequestTiming:
        def ms_since_arrival(t: float | None) -> float:
            return 0.0 if t is None else (t - self.arrival_s) * 1e3

        phases_ms = self.timeline.totals_ms(now)
        return common_pb2.RequestTiming(
            queue_ms=ms_since_arrival(self.first_running_s),
            ttft_ms=ms_since_arrival(self.first_token_s), e2e_ms=(now - self.arrival_s) * 1e3,
            num_preemptions=self.num_preemptions, swapped_ms=self.swapped_ms,
            # The fields are named `<phase>_ms`, one per phase the timeline tells apart.
            **{f"{phase.value}_ms": phases_ms[phase] for phase in Phase if phase in phases_ms})
