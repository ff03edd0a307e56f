"""Multi-turn, multi-tenant workloads: the data types, a ShareGPT-like synthetic generator,
and the deterministic token content that makes every replay send identical prompts.

A workload is plain data, fixed before the run: when each conversation starts, who owns it,
how many new user tokens and answer tokens each turn has, and how long the user "thinks"
between receiving an answer and sending the next turn. The harness replays it; the answers'
token ids are only known at run time, so the multi-turn prompt is built then
(see `next_turn_prompt`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class WorkloadError(ValueError):
    """A workload cannot be built or loaded; the message names the source and the problem."""


@dataclass(frozen=True)
class Turn:
    """One user message and its answer. `prompt_tokens` counts only the new user text, not the
    conversation history that the harness prepends."""

    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1 or self.output_tokens < 1:
            raise WorkloadError(f"a turn needs at least one token each way, got {self}")


@dataclass(frozen=True)
class Conversation:
    """`think_time_s[i]` is the pause between the answer to turn i and the user sending turn
    i + 1, so there is one fewer think time than turns."""

    conversation_id: str
    tenant: str
    arrival_s: float
    turns: tuple[Turn, ...]
    think_time_s: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.turns:
            raise WorkloadError(f"conversation {self.conversation_id!r} has no turns")
        if len(self.think_time_s) != len(self.turns) - 1:
            raise WorkloadError(
                f"conversation {self.conversation_id!r}: {len(self.turns)} turns need "
                f"{len(self.turns) - 1} think times, got {len(self.think_time_s)}"
            )
        if self.arrival_s < 0 or any(t < 0 for t in self.think_time_s):
            raise WorkloadError(f"conversation {self.conversation_id!r}: negative time")


@dataclass(frozen=True)
class TenantSpec:
    """`weight` is the tenant's fair-share weight at the scheduler; `load_share` is the
    fraction of conversations it submits (shares are normalised, so 2 and 1 mean 2/3 and 1/3)."""

    name: str
    weight: float
    load_share: float

    def __post_init__(self) -> None:
        if not self.name:
            raise WorkloadError("a tenant needs a name")
        if not self.weight > 0:
            raise WorkloadError(f"tenant {self.name!r}: weight must be > 0, got {self.weight}")
        if not self.load_share >= 0:
            raise WorkloadError(f"tenant {self.name!r}: load_share must be >= 0")


@dataclass(frozen=True)
class Workload:
    """Conversations sorted by arrival, with unique ids, owned by the listed tenants.

    `num_turns_dropped` counts the turns cut because a conversation's history outgrew
    `max_context_tokens` (see `fit_to_context`); `configured_mean_turns` is the mean number of
    turns the generator drew from, None for recorded data. Neither is a realised figure:
    `summary()` gives those."""

    conversations: tuple[Conversation, ...]
    tenants: tuple[TenantSpec, ...]
    seed: int
    description: str
    max_context_tokens: int | None = None
    num_turns_dropped: int = 0
    configured_mean_turns: float | None = None

    def __post_init__(self) -> None:
        if self.num_turns_dropped < 0:
            raise WorkloadError(f"num_turns_dropped must be >= 0, got {self.num_turns_dropped}")
        tenant_names = [t.name for t in self.tenants]
        if len(set(tenant_names)) != len(tenant_names):
            raise WorkloadError(f"duplicate tenant names in {tenant_names}")
        ids = [c.conversation_id for c in self.conversations]
        if len(set(ids)) != len(ids):
            raise WorkloadError("conversation ids must be unique")
        unknown = {c.tenant for c in self.conversations} - set(tenant_names)
        if unknown:
            raise WorkloadError(f"conversations name unknown tenants {sorted(unknown)}")
        arrivals = [c.arrival_s for c in self.conversations]
        if arrivals != sorted(arrivals):
            raise WorkloadError("conversations must be sorted by arrival time")

    def summary(self) -> dict[str, object]:
        """Realised statistics for the report's `workload` section (pure), plus the two that
        explain a realised mean of turns below the configured one, each named for what it is:
        the configured mean (synthetic workloads only) and the turns the context fit dropped."""
        turns = [t for c in self.conversations for t in c.turns]
        num_turns = len(turns)
        num_conversations = max(1, len(self.conversations))
        configured = (
            {}
            if self.configured_mean_turns is None
            else {"configured_mean_turns_per_conversation": self.configured_mean_turns}
        )
        return {
            "description": self.description,
            "seed": self.seed,
            "num_conversations": len(self.conversations),
            "num_turns": num_turns,
            "mean_turns_per_conversation": num_turns / num_conversations,
            **configured,
            "mean_turns_before_context_fit": (num_turns + self.num_turns_dropped)
            / num_conversations,
            "num_turns_dropped_to_fit_context": self.num_turns_dropped,
            "max_context_tokens": self.max_context_tokens,
            "mean_prompt_tokens_per_turn": sum(t.prompt_tokens for t in turns) / max(1, num_turns),
            "mean_output_tokens_per_turn": sum(t.output_tokens for t in turns) / max(1, num_turns),
            "tenants": {
                t.name: {
                    "weight": t.weight,
                    "load_share": t.load_share,
                    "num_conversations": sum(c.tenant == t.name for c in self.conversations),
                }
                for t in self.tenants
            },
        }


@dataclass(frozen=True)
class LogNormalLength:
    """A token-length distribution given by its mean (more readable than mu) and log-sigma."""

    mean_tokens: float
    sigma: float

    def sample(self, rng: np.random.Generator, *, scale: float) -> int:
        """One length >= 1, with the mean multiplied by `scale`. Advances `rng`."""
        mu = math.log(self.mean_tokens * scale) - self.sigma**2 / 2
        return max(1, round(float(rng.lognormal(mu, self.sigma))))


# ShareGPT-like shapes (heavy right tails): the opening message carries the task and any pasted
# context, follow-ups are short, answers are a few hundred tokens.
FIRST_PROMPT_LENGTH = LogNormalLength(mean_tokens=180.0, sigma=1.2)
FOLLOW_UP_PROMPT_LENGTH = LogNormalLength(mean_tokens=60.0, sigma=1.1)
OUTPUT_LENGTH = LogNormalLength(mean_tokens=230.0, sigma=0.8)
MEAN_TURNS_PER_CONVERSATION = 5.5
MAX_TURNS_PER_CONVERSATION = 32


def fit_to_context(turns: Sequence[Turn], max_context_tokens: int) -> tuple[Turn, ...]:
    """The longest prefix of `turns` whose whole history fits in `max_context_tokens` (pure).

    Turn i's context is every earlier prompt and answer plus its own prompt and answer. The
    first turn is always kept, clipped to fit (answer to at most half the context); a later
    turn that would overflow ends the conversation there, as serving systems drop such turns.
    """
    if max_context_tokens < 2:
        raise WorkloadError(f"max_context_tokens must be >= 2, got {max_context_tokens}")
    first = turns[0]
    output_tokens = min(first.output_tokens, max_context_tokens // 2)
    prompt_tokens = min(first.prompt_tokens, max_context_tokens - output_tokens)
    kept = [Turn(prompt_tokens, output_tokens)]
    num_context_tokens = prompt_tokens + output_tokens
    for turn in turns[1:]:
        num_context_tokens += turn.prompt_tokens + turn.output_tokens
        if num_context_tokens > max_context_tokens:
            break
        kept.append(turn)
    return tuple(kept)


def build_workload(
    turns_per_conversation: Sequence[Sequence[Turn]],
    conversation_ids: Sequence[str],
    *,
    tenants: Sequence[TenantSpec],
    arrival_rate_per_s: float,
    mean_think_time_s: float,
    max_context_tokens: int,
    seed: int,
    description: str,
    configured_mean_turns: float | None = None,
) -> Workload:
    """Schedule given conversations (pure): each fitted to `max_context_tokens`
    (`fit_to_context`, which may drop later turns; the Workload counts them), Poisson arrivals
    at `arrival_rate_per_s`, tenants drawn by load share, exponential think times. Each aspect
    draws from its own stream of `seed`, so e.g. arrival times do not change when lengths do."""
    if len(turns_per_conversation) != len(conversation_ids):
        raise WorkloadError("one conversation id per conversation is needed")
    if not tenants:
        raise WorkloadError("at least one tenant is needed")
    if not arrival_rate_per_s > 0:
        raise WorkloadError(f"arrival_rate_per_s must be > 0, got {arrival_rate_per_s}")
    if not mean_think_time_s >= 0:
        raise WorkloadError(f"mean_think_time_s must be >= 0, got {mean_think_time_s}")
    shares = np.array([t.load_share for t in tenants], dtype=float)
    if not shares.sum() > 0:
        raise WorkloadError("tenant load shares must not all be zero")
    arrival_rng, tenant_rng, think_rng = _streams(seed, "schedule", 3)
    num_conversations = len(conversation_ids)
    gaps_s = arrival_rng.exponential(1.0 / arrival_rate_per_s, size=num_conversations)
    arrivals_s = np.cumsum(gaps_s)
    tenant_indices = tenant_rng.choice(
        len(tenants), size=num_conversations, p=shares / shares.sum()
    )
    conversations = []
    num_turns_dropped = 0
    for i, drawn_turns in enumerate(turns_per_conversation):
        turns = fit_to_context(drawn_turns, max_context_tokens)
        num_turns_dropped += len(drawn_turns) - len(turns)
        think_time_s = think_rng.exponential(mean_think_time_s, size=len(turns) - 1)
        conversations.append(
            Conversation(
                conversation_id=conversation_ids[i],
                tenant=tenants[int(tenant_indices[i])].name,
                arrival_s=float(arrivals_s[i]),
                turns=tuple(turns),
                think_time_s=tuple(float(t) for t in think_time_s),
            )
        )
    return Workload(
        tuple(conversations),
        tuple(tenants),
        seed,
        description,
        max_context_tokens=max_context_tokens,
        num_turns_dropped=num_turns_dropped,
        configured_mean_turns=configured_mean_turns,
    )


def synthesize(
    *,
    num_conversations: int,
    arrival_rate_per_s: float,
    tenants: Sequence[TenantSpec],
    seed: int,
    length_scale: float = 1.0,
    mean_think_time_s: float = 5.0,
    max_context_tokens: int = 8192,
    mean_turns: float = MEAN_TURNS_PER_CONVERSATION,
) -> Workload:
    """A ShareGPT-like multi-turn workload, identical for identical arguments (pure).

    Turns per conversation: geometric on {1, 2, ...} with mean `mean_turns` (ShareGPT's
    multi-round subset averages 5.5), capped at MAX_TURNS_PER_CONVERSATION, which trims the mean
    by under 1% at 5.5. Lengths: log-normal (FIRST_PROMPT_LENGTH, FOLLOW_UP_PROMPT_LENGTH,
    OUTPUT_LENGTH) with means times `length_scale`, so a CPU run can shrink them. Conversations
    are then fitted to `max_context_tokens` (`fit_to_context`).

    So the realised mean is not `mean_turns`, and the description calls the latter "configured":
    a small sample of conversations scatters widely (the geometric's standard deviation is about
    its mean: 16 conversations at seed 0 draw 4.31 turns on average), and when lengths are large
    against the context the fit ends long conversations early (at length scale 0.2 and 640
    tokens of context it keeps about 4.65 of 5.5; at 1.0 and 8192, about 5.4).
    `Workload.summary()` reports the realised mean, the mean before the fit and the turns dropped.
    """
    if num_conversations < 1:
        raise WorkloadError(f"num_conversations must be >= 1, got {num_conversations}")
    if not length_scale > 0:
        raise WorkloadError(f"length_scale must be > 0, got {length_scale}")
    if not mean_turns >= 1:
        raise WorkloadError(f"mean_turns must be >= 1, got {mean_turns}")
    (turn_rng,) = _streams(seed, "turns", 1)
    num_turns = np.minimum(
        turn_rng.geometric(1.0 / mean_turns, size=num_conversations), MAX_TURNS_PER_CONVERSATION
    )
    all_turns = []
    for n in num_turns:
        turns = [
            Turn(
                prompt_tokens=(FIRST_PROMPT_LENGTH if i == 0 else FOLLOW_UP_PROMPT_LENGTH).sample(
                    turn_rng, scale=length_scale
                ),
                output_tokens=OUTPUT_LENGTH.sample(turn_rng, scale=length_scale),
            )
            for i in range(int(n))
        ]
        all_turns.append(turns)
    description = (
        f"synthetic ShareGPT-like: {num_conversations} conversations, turns per conversation "
        f"geometric with configured mean {mean_turns:g}, "
        f"Poisson arrivals at {arrival_rate_per_s}/s, length scale {length_scale}, "
        f"think time mean {mean_think_time_s} s, max context {max_context_tokens} tokens"
    )
    return build_workload(
        all_turns,
        [f"conv-{i:05d}" for i in range(num_conversations)],
        tenants=tenants,
        arrival_rate_per_s=arrival_rate_per_s,
        mean_think_time_s=mean_think_time_s,
        max_context_tokens=max_context_tokens,
        seed=seed,
        description=description,
        configured_mean_turns=mean_turns,
    )


def prompt_token_ids(
    conversation: Conversation,
    turn_index: int,
    vocab_size: int,
    *,
    seed: int = 0,
    num_reserved_ids: int = 0,
) -> list[int]:
    """The token ids of turn `turn_index`'s new user text (pure, deterministic).

    Drawn uniformly from [num_reserved_ids, vocab_size) by a generator keyed on (seed,
    conversation id, turn index), so every replay of a workload, in any configuration and any
    order, sends the same tokens. Reserve low ids to keep BOS/EOS out of prompts.
    """
    if not 0 <= turn_index < len(conversation.turns):
        raise IndexError(f"turn {turn_index} of a {len(conversation.turns)}-turn conversation")
    if not 0 <= num_reserved_ids < vocab_size:
        raise WorkloadError(f"need 0 <= num_reserved_ids < vocab_size ({vocab_size})")
    id_hash = int.from_bytes(
        hashlib.blake2b(conversation.conversation_id.encode(), digest_size=8).digest(), "little"
    )
    rng = np.random.default_rng(np.random.SeedSequence([seed, id_hash, turn_index]))
    num_tokens = conversation.turns[turn_index].prompt_tokens
    return rng.integers(num_reserved_ids, vocab_size, size=num_tokens).tolist()


def next_turn_prompt(
    previous_prompt_token_ids: Sequence[int],
    previous_output_token_ids: Sequence[int],
    new_user_token_ids: Sequence[int],
) -> list[int]:
    """The full prompt of a later turn: the previous turn's prompt, the answer actually
    generated for it, then the new user text (pure; returns a new list). For the first turn
    the prompt is just `prompt_token_ids(conversation, 0, ...)`. Because each prompt extends the
    previous one, the KV of the previous turn is a reusable prefix of the next."""
    return [*previous_prompt_token_ids, *previous_output_token_ids, *new_user_token_ids]


def _streams(seed: int, purpose: str, count: int) -> list[np.random.Generator]:
    """Independent generators for one purpose of one seed (pure)."""
    purpose_key = int.from_bytes(
        hashlib.blake2b(purpose.encode(), digest_size=4).digest(), "little"
    )
    children = np.random.SeedSequence([seed, purpose_key]).spawn(count)
    return [np.random.default_rng(child) for child in children]
