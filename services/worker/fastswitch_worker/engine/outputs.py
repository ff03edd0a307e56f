"""What one engine step reports: new tokens, state changes, KV events, figures."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from fastswitch_worker.engine.kv_manager import PublishedKV
from fastswitch_worker.engine.sequence import FinishReason, RequestStatus


@dataclass(frozen=True)
class RequestOutput:
    request_id: str
    new_token_ids: tuple[int, ...]
    new_logprobs: tuple[float, ...]
    finish_reason: FinishReason | None
    num_prompt_tokens: int
    num_generated_tokens: int
    num_reused_tokens: int


@dataclass(frozen=True)
class StateChange:
    request_id: str
    status: RequestStatus
    reason: str = ""  # set for changes nobody asked for, e.g. "kv_exhausted"


@dataclass(frozen=True)
class StepResult:
    step: int
    outputs: tuple[RequestOutput, ...]
    state_changes: tuple[StateChange, ...]
    published: tuple[PublishedKV, ...]
    evicted_conversation_ids: tuple[str, ...]
    num_batched_tokens: int
    stall_ms: float  # time this step waited on copies


@dataclass
class SwapCounters:
    """Cumulative context-switch figures of one engine (mutated by the engine thread)."""

    num_swap_outs: int = 0  # preemptions that copied KV to host memory
    num_retired_turns: int = 0  # finished turns whose KV was copied out for reuse
    num_swap_ins: int = 0
    num_cancelled_swap_outs: int = 0
    num_recomputes: int = 0
    num_kv_exhausted_preemptions: int = 0
    reused_bytes: int = 0  # swap-out bytes not copied because the host copy was still valid
    num_reused_prompt_tokens: int = 0  # prompt tokens swapped in from a previous turn
    num_reuse_hits: int = 0  # requests that reused a previous turn's KV
    stall_ms: float = 0.0  # the engine thread waited on copies instead of computing


# Upper bounds (seconds) of the per-copy latency histogram both copy executors keep per
# direction (CopyTotals.num_jobs_by_latency, read by the worker's /metrics).
COPY_LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                          0.1, 0.25, 0.5, 1.0, 2.5)


def count_copy_latency(num_jobs_by_latency: list[int], copy_s: float) -> None:
    """Mutates: one copy of `copy_s` seconds into its bucket (the last one: above them all)."""
    num_jobs_by_latency[bisect.bisect_left(COPY_LATENCY_BUCKETS_S, copy_s)] += 1


def new_latency_counts() -> list[int]:
    return [0] * (len(COPY_LATENCY_BUCKETS_S) + 1)


@dataclass
class CopyTotals:
    """Cumulative figures of one direction's copies, kept by either copy executor (the real
    swapper.Swapper and the simulated one) and read by the worker's /metrics."""

    num_jobs: int = 0
    num_copies: int = 0
    num_bytes: int = 0
    copy_ms: float = 0.0
    num_jobs_by_latency: list[int] = field(default_factory=new_latency_counts)

    def count(self, num_copies: int, num_bytes: int, copy_s: float) -> None:
        """Mutates: one finished copy job."""
        self.num_jobs += 1
        self.num_copies += num_copies
        self.num_bytes += num_bytes
        self.copy_ms += copy_s * 1e3
        count_copy_latency(self.num_jobs_by_latency, copy_s)
