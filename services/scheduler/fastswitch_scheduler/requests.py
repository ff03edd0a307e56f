"""A client request as the scheduler tracks it across workers, preemptions and streams."""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field

import grpc

from fastswitch.tokenizer import IncrementalDetokenizer
from fastswitch.v1 import common_pb2
from fastswitch_scheduler.tenants import TenantState


class Phase(enum.Enum):
    QUEUED = "queued"  # on a worker's list (or none yet), never admitted or told to wait
    RUNNING = "running"  # admitted or resumed: the worker may compute it
    PREEMPTED = "preempted"  # told to preempt (or the worker preempted it): KV in host memory
    FINISHED = "finished"


@dataclass(frozen=True)
class Failure:
    """Ends a client stream with a gRPC status."""

    code: grpc.StatusCode
    message: str


@dataclass(eq=False)
class ClusterRequest:
    request_id: str  # scheduler-wide unique id, used with workers
    client_request_id: str
    tenant: TenantState
    prompt_token_ids: list[int]
    sampling: common_pb2.SamplingParams
    stop: common_pb2.StopConditions
    conversation_id: str = ""
    priority: int = 0
    arrival_s: float = field(default_factory=time.monotonic)
    worker_id: str | None = None
    unrouted_since_s: float = field(default_factory=time.monotonic)  # while worker_id is None
    phase: Phase = Phase.QUEUED
    is_admitted: bool = False  # the current worker knows this request
    generated_token_ids: list[int] = field(default_factory=list)
    is_prompt_charged: bool = False
    num_reused_prompt_tokens: int = 0
    first_admit_s: float | None = None
    first_token_s: float | None = None
    num_preemptions: int = 0
    preempted_since_s: float | None = None
    swapped_ms: float = 0.0
    detokenizer: IncrementalDetokenizer | None = None
    responses: asyncio.Queue = field(default_factory=asyncio.Queue)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.generated_token_ids)

    @property
    def num_remaining_tokens(self) -> int:
        return self.stop.max_tokens - len(self.generated_token_ids)

    def kv_tokens_needed(self, headroom_tokens: int) -> int:
        """Estimate of the GPU KV this request occupies soon if it runs."""
        return self.num_tokens + min(self.num_remaining_tokens, headroom_tokens)

    @property
    def trace_key(self) -> str:
        """Stable across runs (unlike request_id): the priority trace's key, so replaying a
        workload with the same client ids replays the same priority changes."""
        return f"{self.tenant.name}/{self.client_request_id}"

    @property
    def scoped_conversation_id(self) -> str:
        """The conversation id workers and the kvstore see: scoped to the tenant, so one
        tenant can neither reuse nor evict another's conversation KV by naming it."""
        return f"{self.tenant.name}:{self.conversation_id}" if self.conversation_id else ""

    def admit_prompt(self) -> list[int]:
        """What a worker must prefill: the prompt, plus tokens already generated elsewhere."""
        return self.prompt_token_ids + self.generated_token_ids

    def mark_phase(self, phase: Phase) -> None:
        """Mutates: phase change with preemption timing."""
        now = time.monotonic()
        if phase is Phase.PREEMPTED and self.phase is not Phase.PREEMPTED:
            self.num_preemptions += 1
            self.preempted_since_s = now
        if self.phase is Phase.PREEMPTED and phase is not Phase.PREEMPTED and self.preempted_since_s:
            self.swapped_ms += (now - self.preempted_since_s) * 1e3
            self.preempted_since_s = None
        if phase is Phase.RUNNING and self.first_admit_s is None:
            self.first_admit_s = now
        self.phase = phase
