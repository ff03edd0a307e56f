"""Per-request state inside the engine: tokens, sampling, KV bookkeeping, lifecycle."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field

from fastswitch_worker.engine.block_table import BlockTable


class RequestStatus(enum.Enum):
    WAITING = "waiting"  # queued; may hold reusable KV but nothing on the GPU yet
    RUNNING = "running"  # GPU KV valid for num_computed_tokens; scheduled each step
    SWAPPING_OUT = "swapping_out"  # GPU -> host copy in flight; GPU blocks still held
    SWAPPED = "swapped"  # KV only in host memory
    SWAPPING_IN = "swapping_in"  # host -> GPU copy in flight; not schedulable yet
    FINISHED = "finished"
    ABORTED = "aborted"

    @property
    def is_done(self) -> bool:
        return self in (RequestStatus.FINISHED, RequestStatus.ABORTED)


# Which transitions the engine may make; asserted on every change.
_ALLOWED = {
    RequestStatus.WAITING: {RequestStatus.RUNNING, RequestStatus.SWAPPING_IN,
                            RequestStatus.SWAPPED, RequestStatus.ABORTED},
    RequestStatus.RUNNING: {RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPED,
                            RequestStatus.FINISHED, RequestStatus.ABORTED, RequestStatus.WAITING},
    RequestStatus.SWAPPING_OUT: {RequestStatus.SWAPPED, RequestStatus.RUNNING,
                                 RequestStatus.ABORTED},
    RequestStatus.SWAPPED: {RequestStatus.SWAPPING_IN, RequestStatus.WAITING,
                            RequestStatus.RUNNING, RequestStatus.ABORTED},
    RequestStatus.SWAPPING_IN: {RequestStatus.RUNNING, RequestStatus.ABORTED},
    RequestStatus.FINISHED: set(),
    RequestStatus.ABORTED: set(),
}


# Below this temperature sampling is greedy (vLLM's threshold): dividing logits by a smaller
# one only overflows, and the distribution is already a point mass at the argmax.
MIN_SAMPLING_TEMPERATURE = 1e-5


class FinishReason(enum.Enum):
    STOP = "stop"
    LENGTH = "length"
    ABORTED = "aborted"


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0  # 0 (or below MIN_SAMPLING_TEMPERATURE) = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None
    logprobs: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def is_greedy(self) -> bool:
        return self.temperature < MIN_SAMPLING_TEMPERATURE


@dataclass(frozen=True)
class StopConditions:
    max_tokens: int = 16
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError(f"max_tokens must be > 0, got {self.max_tokens}")


@dataclass(eq=False)
class Request:
    """One generation request. Mutated only by the engine thread."""

    request_id: str
    prompt_token_ids: list[int]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: StopConditions = field(default_factory=StopConditions)
    conversation_id: str = ""
    # The client's priority (AdmitCommand.priority; higher matters more). Not the cluster
    # scheduler's rank: BatchScheduler.ranks holds that.
    client_priority: int = 0
    arrival_time_s: float = field(default_factory=time.monotonic)

    output_token_ids: list[int] = field(default_factory=list)
    output_logprobs: list[float] = field(default_factory=list)
    status: RequestStatus = RequestStatus.WAITING
    finish_reason: FinishReason | None = None
    # Tokens whose K/V is in the GPU cache (prefix of all_token_ids).
    num_computed_tokens: int = 0
    # Tokens whose K/V is valid in the host copy (a prefix); 0 when there is no host copy.
    num_host_valid_tokens: int = 0
    # Prompt tokens that came from a previous turn's KV instead of being prefilled.
    num_reused_tokens: int = 0
    num_preemptions: int = 0
    # Copies of this request's KV still running on a copy thread (the engine keeps count).
    num_inflight_copies: int = 0
    gpu_table: BlockTable | None = None
    host_table: BlockTable | None = None

    @property
    def all_token_ids(self) -> list[int]:
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_token_ids)

    @property
    def num_uncomputed_tokens(self) -> int:
        return self.num_tokens - self.num_computed_tokens

    @property
    def is_prefilling(self) -> bool:
        return self.num_computed_tokens < self.num_prompt_tokens

    def set_status(self, new_status: RequestStatus) -> None:
        """Mutates: moves through the state machine; an illegal transition is a bug."""
        assert new_status in _ALLOWED[self.status], (
            f"{self.request_id}: illegal transition {self.status.name} -> {new_status.name}"
        )
        self.status = new_status

    def append_token(self, token_id: int, logprob: float | None, eos_token_ids: tuple[int, ...]) -> None:
        """Mutates: records a sampled token and sets finish_reason when a stop condition hits."""
        self.output_token_ids.append(token_id)
        if logprob is not None:
            self.output_logprobs.append(logprob)
        is_eos = not self.stop.ignore_eos and token_id in eos_token_ids
        if is_eos or token_id in self.stop.stop_token_ids:
            self.finish_reason = FinishReason.STOP
        elif len(self.output_token_ids) >= self.stop.max_tokens:
            self.finish_reason = FinishReason.LENGTH
