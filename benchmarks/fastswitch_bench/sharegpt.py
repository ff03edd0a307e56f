"""Load a local ShareGPT JSON file into a Workload (never downloads anything).

Expected shape, as published: a list of entries
`{"id": str, "conversations": [{"from": "human" | "gpt" | ..., "value": str}, ...]}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fastswitch_bench.workload import (
    TenantSpec,
    Turn,
    Workload,
    WorkloadError,
    build_workload,
)

USER_ROLE = "human"
ASSISTANT_ROLE = "gpt"


def estimate_num_tokens(text: str) -> int:
    """Token count without a tokenizer: the common ~4 characters per token rule (pure)."""
    return math.ceil(len(text) / 4)


def load_sharegpt(
    path: str | Path,
    *,
    tenants: Sequence[TenantSpec],
    arrival_rate_per_s: float,
    seed: int,
    tokenize: Callable[[str], list[int]] | None = None,
    max_conversations: int | None = None,
    mean_think_time_s: float = 5.0,
    max_context_tokens: int = 8192,
) -> Workload:
    """Read `path` and replay its conversations' lengths with a seeded schedule (pure apart
    from reading the file).

    Each "human" message answered by the next "gpt" message is one Turn; consecutive human
    messages are joined, an answer with no question is dropped, and other roles (e.g.
    "system") are ignored. Turns with an empty side are dropped, conversations left with no
    complete pair are skipped, and each kept conversation is fitted to `max_context_tokens`
    (the Workload counts the turns that cuts).
    Lengths come from `tokenize` or, when it is None, `estimate_num_tokens`. With
    `max_conversations`, a seeded random sample of the usable conversations is kept, in file
    order. Arrivals, tenants and think times are drawn as in `build_workload`.
    Raises WorkloadError naming the file for a missing file, invalid JSON or a malformed entry.
    """
    path = Path(path)
    entries = _read_entries(path)
    count_tokens = estimate_num_tokens if tokenize is None else (lambda text: len(tokenize(text)))
    conversation_ids: list[str] = []
    taken_ids: set[str] = set()
    turns_per_conversation: list[tuple[Turn, ...]] = []  # as recorded, not yet fitted
    for index, entry in enumerate(entries):
        pairs = _question_answer_pairs(path, index, entry)
        turns = []
        for question, answer in pairs:
            prompt_tokens, output_tokens = count_tokens(question), count_tokens(answer)
            if prompt_tokens > 0 and output_tokens > 0:
                turns.append(Turn(prompt_tokens, output_tokens))
        if turns:
            conversation_id = _unique_id(entry["id"], taken_ids)
            taken_ids.add(conversation_id)
            conversation_ids.append(conversation_id)
            turns_per_conversation.append(tuple(turns))
    if not turns_per_conversation:
        raise WorkloadError(f"{path}: no conversation has a complete human -> gpt turn")
    if max_conversations is not None and max_conversations < len(conversation_ids):
        sample_rng = np.random.default_rng(np.random.SeedSequence([seed, len(conversation_ids)]))
        kept = sorted(sample_rng.choice(len(conversation_ids), max_conversations, replace=False))
        conversation_ids = [conversation_ids[i] for i in kept]
        turns_per_conversation = [turns_per_conversation[i] for i in kept]
    description = (
        f"ShareGPT file {path.name}: {len(conversation_ids)} conversations, Poisson arrivals at "
        f"{arrival_rate_per_s}/s, think time mean {mean_think_time_s} s, "
        f"max context {max_context_tokens} tokens, "
        f"lengths by {'tokenizer' if tokenize is not None else '4-characters-per-token estimate'}"
    )
    return build_workload(
        turns_per_conversation,
        conversation_ids,
        tenants=tenants,
        arrival_rate_per_s=arrival_rate_per_s,
        mean_think_time_s=mean_think_time_s,
        max_context_tokens=max_context_tokens,
        seed=seed,
        description=description,
    )


def _read_entries(path: Path) -> list:
    if not path.is_file():
        raise WorkloadError(f"{path}: no such file (ShareGPT data must be provided locally)")
    try:
        with path.open(encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as exc:
        raise WorkloadError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: not UTF-8 text: {exc.reason}") from exc
    if not isinstance(data, list):
        raise WorkloadError(
            f"{path}: expected a JSON list of conversations, got {type(data).__name__}"
        )
    return data


def _question_answer_pairs(path: Path, index: int, entry: object) -> list[tuple[str, str]]:
    """Validates one entry and pairs its messages (pure)."""
    where = f"{path}: entry {index}"
    if not isinstance(entry, dict):
        raise WorkloadError(f"{where}: expected an object, got {type(entry).__name__}")
    for key in ("id", "conversations"):
        if key not in entry:
            raise WorkloadError(f"{where}: missing key {key!r}")
    if not isinstance(entry["id"], str):
        raise WorkloadError(f"{where}: 'id' must be a string, got {type(entry['id']).__name__}")
    where = f"{where} (id {entry['id']!r})"
    messages = entry["conversations"]
    if not isinstance(messages, list):
        raise WorkloadError(
            f"{where}: 'conversations' must be a list, got {type(messages).__name__}"
        )
    pairs = []
    pending_question: str | None = None
    for message_index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise WorkloadError(f"{where}: message {message_index} must be an object")
        for key in ("from", "value"):
            if key not in message:
                raise WorkloadError(f"{where}: message {message_index} is missing key {key!r}")
            if not isinstance(message[key], str):
                raise WorkloadError(
                    f"{where}: message {message_index} {key!r} must be a string, "
                    f"got {type(message[key]).__name__}"
                )
        role, text = message["from"], message["value"]
        if role == USER_ROLE:
            pending_question = text if pending_question is None else f"{pending_question}\n{text}"
        elif role == ASSISTANT_ROLE and pending_question is not None:
            pairs.append((pending_question, text))
            pending_question = None
    return pairs


def _unique_id(raw_id: str, taken_ids: set[str]) -> str:
    """Published ShareGPT dumps repeat some ids; conversation ids key KV reuse, so suffix them."""
    if raw_id not in taken_ids:
        return raw_id
    suffix = 1
    while f"{raw_id}#{suffix}" in taken_ids:
        suffix += 1
    return f"{raw_id}#{suffix}"
