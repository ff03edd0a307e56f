"""A client request as the scheduler tracks it across workers and preemptions."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import grpc

from fastswitch.tenants import TenantState


class Phase(enum.Enum):
    QUEUED = "queued"  # on a worker's list (or none yet), never admitted or told to wait
    RUNNING = "running"  # admitted or resumed: the worker may compute it
    PREEMPTED = "preempted"  # told to preempt (or the worker preempted it): KV in host memory
    FINISHED = "finished"


@dataclass(frozen=True)
class Failure:
    """Ends a request with a gRPC status (sent to its frontend as a RequestEnd)."""

    code: grpc.StatusCode
    message: str


@dataclass(eq=False)
class ClusterRequest:
    """Counts, not tokens: the frontend that owns the request holds its prompt and output."""

    request_id: str  # cluster-wide unique, made by the owning frontend
    client_request_id: str
    tenant: TenantState
    frontend_id: str
    num_prompt_tokens: int
    max_tokens: int  # new tokens the request may produce in all
    conversation_id: str = ""  # scoped to the tenant by the frontend ("<tenant>:<id>")
    priority: int = 0
    num_generated_tokens: int = 0
    arrival_s: float = field(default_factory=time.monotonic)
    worker_id: str | None = None
    unrouted_since_s: float = field(default_factory=time.monotonic)  # while worker_id is None
    # A worker the frontend says holds the request (after a scheduler restart), until that
    # worker's hello confirms or denies it; the request is not routed elsewhere meanwhile.
    claimed_worker_id: str = ""
    phase: Phase = Phase.QUEUED
    is_admitted: bool = False  # the current worker knows this request
    is_prompt_charged: bool = False  # charged when first admitted (counters.py)
    is_reuse_refunded: bool = False  # the part of the prompt a turn reused was given back
    # The conversation's KV holder (kvstore), looked up once when the request is first routed.
    kv_holder_id: str | None = None
    is_holder_looked_up: bool = False
    # The tenant's counter when the request last started running (admit or resume): the
    # quantum protects it from fairness preemption until the tenant was served that much more.
    counter_at_start: float = 0.0
    # Tokens whose KV the worker's host memory holds (estimated: the request's length when it
    # was last swapped out; KV reuse keeps that copy valid across the swap-in). A swap-out then
    # copies only num_tokens - host_tokens: the policy prefers cheap victims.
    host_tokens: int = 0
    first_admit_s: float | None = None
    num_preemptions: int = 0
    preempted_since_s: float | None = None
    swapped_ms: float = 0.0

    @property
    def num_tokens(self) -> int:
        return self.num_prompt_tokens + self.num_generated_tokens

    @property
    def num_remaining_tokens(self) -> int:
        return self.max_tokens - self.num_generated_tokens

    @property
    def switch_cost_tokens(self) -> int:
        """Tokens a swap-out would copy now (what the host does not hold already)."""
        return max(0, self.num_tokens - self.host_tokens)

    def kv_tokens_needed(self, headroom_tokens: int) -> int:
        """Estimate of the GPU KV this request occupies soon if it runs."""
        return self.num_tokens + min(self.num_remaining_tokens, headroom_tokens)

    @property
    def trace_key(self) -> str:
        """Stable across runs (unlike request_id): the priority trace's key, so replaying a
        workload with the same client ids replays the same priority changes."""
        return f"{self.tenant.name}/{self.client_request_id}"

    def mark_phase(self, phase: Phase) -> None:
        """Mutates: phase change with preemption timing, the host-copy estimate and the
        quantum's starting point."""
        now = time.monotonic()
        if phase is Phase.PREEMPTED and self.phase is not Phase.PREEMPTED:
            self.num_preemptions += 1
            self.preempted_since_s = now
        if self.phase is Phase.PREEMPTED and phase is not Phase.PREEMPTED and self.preempted_since_s:
            self.swapped_ms += (now - self.preempted_since_s) * 1e3
            self.preempted_since_s = None
        if phase is Phase.RUNNING and self.first_admit_s is None:
            self.first_admit_s = now
        if phase is Phase.PREEMPTED and self.phase is Phase.RUNNING:
            self.host_tokens = self.num_tokens  # what its swap-out leaves on the host
        if phase is Phase.RUNNING and self.phase is not Phase.RUNNING:
            self.counter_at_start = self.tenant.virtual_tokens
        self.phase = phase
