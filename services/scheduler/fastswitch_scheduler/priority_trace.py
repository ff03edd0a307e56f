"""The paper's priority-change patterns, Random and Markov, as a seeded, pure generator.

At every engine iteration each live request's priority changes with probability
`update_probability` (the paper uses 0.04 for its 8B runs and 0.02 for 32B). On a change,
Random jumps to a uniformly chosen *other* level; Markov jumps by the transition matrix of
`markov_transition_matrix`, which prefers near levels. Over one iteration the Markov chain is
therefore `(1 - p) * I + p * M`.

Determinism: every request has its own generator keyed on (seed, request id), and changes are
placed by geometric gaps from the step it was first seen, so a request's priority at a step
depends only on (seed, request id, first step, step) — not on which other requests exist, nor
on the order they are asked about. The scheduler's `trace` policy owns what a level means.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

PriorityPattern = Literal["random", "markov"]
PATTERNS: tuple[str, ...] = ("random", "markov")


def markov_transition_matrix(num_levels: int) -> np.ndarray:
    """Where a Markov change goes: row i gives P(new level j | level i) (pure).

    The diagonal is zero (a change always changes); off the diagonal the weight halves with
    each extra level of distance, so most changes move to a neighbour.
    """
    if num_levels < 2:
        raise ValueError(f"a priority change needs at least 2 levels, got {num_levels}")
    levels = np.arange(num_levels)
    distance = np.abs(levels[:, None] - levels[None, :])  # [num_levels, num_levels]
    weights = np.where(distance == 0, 0.0, 0.5 ** (distance - 1.0))
    return weights / weights.sum(axis=1, keepdims=True)


@dataclass
class _RequestChain:
    """Mutable per-request state; `next_change_step` is None when changes never happen."""

    rng: np.random.Generator
    level: int
    last_step: int
    next_change_step: int | None


class PriorityTrace:
    """Seeded priority levels 0..num_levels-1 for a changing set of requests."""

    def __init__(
        self,
        *,
        pattern: PriorityPattern,
        update_probability: float,
        num_levels: int,
        seed: int,
    ) -> None:
        if pattern not in PATTERNS:
            raise ValueError(f"unknown priority pattern {pattern!r}; expected one of {PATTERNS}")
        if not 0.0 <= update_probability <= 1.0:
            raise ValueError(f"update_probability must be in [0, 1], got {update_probability}")
        self.pattern = pattern
        self.update_probability = update_probability
        self.num_levels = num_levels
        self.seed = seed
        self._transition = markov_transition_matrix(num_levels)
        self._chains: dict[str, _RequestChain] = {}

    def priorities_at(self, request_ids: Iterable[str], step: int) -> dict[str, int]:
        """Each request's level at iteration `step`. Mutates: a request seen for the first
        time starts its chain at `step` with a uniformly drawn level; a known one is advanced
        through every change in (its last step, `step`]. Steps must not go back per request."""
        levels = {}
        for request_id in request_ids:
            chain = self._chains.get(request_id)
            if chain is None:
                chain = self._start_chain(request_id, step)
                self._chains[request_id] = chain
            elif step < chain.last_step:
                raise ValueError(
                    f"request {request_id!r} was already at step {chain.last_step}, asked for {step}"
                )
            while chain.next_change_step is not None and chain.next_change_step <= step:
                chain.level = self._changed_level(chain)
                chain.next_change_step += self._steps_to_next_change(chain.rng)
            chain.last_step = step
            levels[request_id] = chain.level
        return levels

    def forget(self, request_id: str) -> None:
        """Drops a finished request's state (mutates). Unknown ids are ignored: a request may
        finish before the trace was ever asked about it."""
        self._chains.pop(request_id, None)

    def _start_chain(self, request_id: str, step: int) -> _RequestChain:
        id_hash = int.from_bytes(
            hashlib.blake2b(request_id.encode(), digest_size=8).digest(), "little"
        )
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, id_hash]))
        level = int(rng.integers(self.num_levels))
        gap = self._steps_to_next_change(rng)
        return _RequestChain(rng, level, step, None if gap is None else step + gap)

    def _steps_to_next_change(self, rng: np.random.Generator) -> int | None:
        # A Bernoulli(p) trial per iteration puts the next success a Geometric(p) number of
        # iterations ahead; drawing the gap directly makes skipped iterations free.
        if self.update_probability == 0.0:
            return None
        return int(rng.geometric(self.update_probability))

    def _changed_level(self, chain: _RequestChain) -> int:
        if self.pattern == "random":
            other = int(chain.rng.integers(self.num_levels - 1))
            return other if other < chain.level else other + 1
        return int(chain.rng.choice(self.num_levels, p=self._transition[chain.level]))


class IterationClock:
    """The trace's clock in engine iterations, as the scheduler hears of them (mutable).

    Workers report how many of their steps ran the model; the scheduler applies the trace once
    per tick, and each tick advances the clock by the most iterations any one worker ran since
    the previous tick: for one worker exactly its iterations, for several the pace of the
    busiest. A worker that stalls on copies therefore also changes priorities less often per
    second, as the paper's per-iteration trace does.
    """

    def __init__(self) -> None:
        self.step = 0
        self._since_tick: collections.Counter[str] = collections.Counter()

    def add(self, worker_id: str, num_iterations: int) -> None:
        """Mutates: `worker_id` ran `num_iterations` more iterations."""
        self._since_tick[worker_id] += num_iterations

    def tick(self) -> int:
        """Mutates: advances the clock at a scheduler tick; returns the step now."""
        self.step += max(self._since_tick.values(), default=0)
        self._since_tick.clear()
        return self.step
