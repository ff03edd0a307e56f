"""What one BatchScheduler.schedule() decides: the batch and the swaps that start this step.

Pure data (no torch). StepPlan collects the decisions while schedule() makes them; its build()
freezes them into a SchedulerOutput, whose invariants are asserted as it is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.sequence import Request


@dataclass(frozen=True)
class ScheduledChunk:
    request: Request
    num_new_tokens: int  # prefill chunk length, or 1 for a decode

    @property
    def is_sampling(self) -> bool:
        """True when this chunk reaches the last token, so its logits give the next token."""
        return self.request.num_computed_tokens + self.num_new_tokens == self.request.num_tokens


@dataclass(frozen=True)
class SchedulerOutput:
    chunks: tuple[ScheduledChunk, ...]
    # Swap plans in the order they were made. Blocking ones must run in this order: a plan
    # may reuse blocks an earlier plan of this step freed (after the earlier one read them).
    swaps: tuple[SwapPlan, ...]
    # Copies the engine must finish before the forward pass: swap-ins whose requests are in
    # this batch, and swap-outs whose GPU blocks this batch already reuses. Their requests'
    # transitions are already made (see switches.Switches.begin_swap_out / begin_swap_in).
    blocking_ids: frozenset[str]
    # Resumes that arrived during a swap-out: the copy is cancelled, the GPU KV kept.
    cancelled_swap_out_ids: frozenset[str]
    # Preempted without a copy because host memory was full: they recompute on resume.
    recomputed_ids: tuple[str, ...]
    # Preempted by the worker itself because GPU KV ran out (lowest rank first).
    kv_exhausted_ids: tuple[str, ...] = ()

    @property
    def swap_outs(self) -> tuple[SwapPlan, ...]:
        return tuple(p for p in self.swaps if p.direction is SwapDirection.OUT)

    @property
    def swap_ins(self) -> tuple[SwapPlan, ...]:
        return tuple(p for p in self.swaps if p.direction is SwapDirection.IN)

    def __post_init__(self) -> None:
        out_ids = {p.request_id for p in self.swap_outs}
        in_ids = {p.request_id for p in self.swap_ins}
        chunk_ids = [c.request.request_id for c in self.chunks]
        assert not out_ids & in_ids, "a request is swapped in and out in one step"
        assert len(set(chunk_ids)) == len(chunk_ids), "a request is scheduled twice"
        assert not out_ids & set(chunk_ids), "a swapping-out request is computed"
        assert self.blocking_ids <= in_ids | out_ids

    @property
    def num_batched_tokens(self) -> int:
        return sum(c.num_new_tokens for c in self.chunks)


@dataclass
class StepPlan:
    """The decisions of one schedule() call so far. Every method mutates; build() freezes."""

    budget: int  # tokens this batch can still take
    max_num_seqs: int
    chunks: list[ScheduledChunk] = field(default_factory=list)
    swaps: list[SwapPlan] = field(default_factory=list)  # both directions, in planning order
    blocking_ids: set[str] = field(default_factory=set)
    cancelled_swap_out_ids: set[str] = field(default_factory=set)
    recomputed_ids: list[str] = field(default_factory=list)
    kv_exhausted_ids: list[str] = field(default_factory=list)

    def has_room(self) -> bool:
        """Read-only: whether one more chunk fits (tokens left and a sequence slot free)."""
        return self.budget > 0 and len(self.chunks) < self.max_num_seqs

    def scheduled_ids(self) -> set[str]:
        """Read-only: the requests already in the batch."""
        return {c.request.request_id for c in self.chunks}

    def add_chunk(self, request: Request, num_new_tokens: int) -> None:
        self.chunks.append(ScheduledChunk(request, num_new_tokens))
        self.budget -= num_new_tokens

    def drop_chunk(self, request: Request) -> None:
        """The request was preempted (to make room) after it was batched. Its tokens are not
        given back to the budget: batches stay exactly what v0.1 made them."""
        self.chunks[:] = [c for c in self.chunks if c.request is not request]

    def add_swap(self, plan: SwapPlan, *, is_blocking: bool) -> None:
        self.swaps.append(plan)
        if is_blocking:
            self.blocking_ids.add(plan.request_id)

    def build(self) -> SchedulerOutput:
        return SchedulerOutput(tuple(self.chunks), tuple(self.swaps),
                               frozenset(self.blocking_ids),
                               frozenset(self.cancelled_swap_out_ids),
                               tuple(self.recomputed_ids), tuple(self.kv_exhausted_ids))
