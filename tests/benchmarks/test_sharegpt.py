"""Loading a local ShareGPT file: pairing, lengths, sampling, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastswitch_bench.sharegpt import estimate_num_tokens, load_sharegpt
from fastswitch_bench.workload import TenantSpec, Turn, WorkloadError

TENANTS = (TenantSpec("alice", 1.0, 1.0), TenantSpec("bob", 1.0, 1.0))


def _message(role: str, text: str) -> dict:
    return {"from": role, "value": text}


def _write(tmp_path: Path, data: object, name: str = "sharegpt.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


VALID_ENTRIES = [
    {
        "id": "two-turns",
        "conversations": [
            _message("human", "one two three four five six seven eight"),
            _message("gpt", "a" * 40),
            _message("human", "short"),
            _message("gpt", "b" * 8),
        ],
    },
    {"id": "gpt-only", "conversations": [_message("gpt", "an answer with no question")]},
    {
        "id": "system-and-double-human",
        "conversations": [
            _message("system", "ignored"),
            _message("human", "x" * 4),
            _message("human", "y" * 3),
            _message("gpt", "z" * 12),
            _message("human", "left unanswered"),
        ],
    },
    {"id": "empty-answer", "conversations": [_message("human", "hi"), _message("gpt", "")]},
    {"id": "two-turns", "conversations": [_message("human", "dup"), _message("gpt", "dup")]},
]


def _load(path: Path, **overrides):
    arguments = {"tenants": TENANTS, "arrival_rate_per_s": 1.0, "seed": 5, **overrides}
    return load_sharegpt(path, **arguments)


def test_human_gpt_pairs_become_turns_and_unpaired_conversations_are_skipped(tmp_path) -> None:
    workload = _load(_write(tmp_path, VALID_ENTRIES))
    by_id = {c.conversation_id: c for c in workload.conversations}
    assert sorted(by_id) == ["system-and-double-human", "two-turns", "two-turns#1"]
    assert by_id["two-turns"].turns == (Turn(10, 10), Turn(2, 2))
    # Consecutive human messages join with a newline: 4 + 1 + 3 characters.
    assert by_id["system-and-double-human"].turns == (Turn(2, 3),)
    assert len(by_id["two-turns"].think_time_s) == 1


def test_a_tokenizer_replaces_the_character_estimate(tmp_path) -> None:
    workload = _load(_write(tmp_path, VALID_ENTRIES[:1]), tokenize=lambda text: text.split())
    assert workload.conversations[0].turns == (Turn(8, 1), Turn(1, 1))
    assert estimate_num_tokens("abcde") == 2


def test_max_conversations_keeps_a_seeded_sample_in_file_order(tmp_path) -> None:
    entries = [
        {"id": f"c{i}", "conversations": [_message("human", "q" * 8), _message("gpt", "a" * 8)]}
        for i in range(20)
    ]
    path = _write(tmp_path, entries)
    sample = [c.conversation_id for c in _load(path, max_conversations=5).conversations]
    assert len(sample) == 5
    assert sample == sorted(sample, key=lambda cid: int(cid[1:]))
    assert sample == [c.conversation_id for c in _load(path, max_conversations=5).conversations]
    other_seed = [c.conversation_id for c in _load(path, max_conversations=5, seed=6).conversations]
    assert other_seed != sample


def test_long_conversations_are_fitted_to_the_context(tmp_path) -> None:
    entry = {
        "id": "long",
        "conversations": [_message("human", "q" * 400), _message("gpt", "a" * 400)] * 3,
    }
    workload = _load(_write(tmp_path, [entry]), max_context_tokens=250)
    assert workload.conversations[0].turns == (Turn(100, 100),)
    summary = workload.summary()
    assert summary["num_turns_dropped_to_fit_context"] == 2
    assert summary["mean_turns_before_context_fit"] == 3.0
    assert "configured_mean_turns_per_conversation" not in summary  # recorded data: no target


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON"),
        (json.dumps({"id": "x"}), "expected a JSON list"),
        (json.dumps(["text"]), "entry 0: expected an object"),
        (json.dumps([{"conversations": []}]), "missing key 'id'"),
        (json.dumps([{"id": "x"}]), "missing key 'conversations'"),
        (json.dumps([{"id": 3, "conversations": []}]), "'id' must be a string"),
        (json.dumps([{"id": "x", "conversations": {}}]), "'conversations' must be a list"),
        (json.dumps([{"id": "x", "conversations": [{"from": "human"}]}]), "missing key 'value'"),
        (
            json.dumps([{"id": "x", "conversations": [{"from": "human", "value": 5}]}]),
            "'value' must be a string",
        ),
        (
            json.dumps([{"id": "x", "conversations": [{"from": None, "value": "v"}]}]),
            "'from' must be a string",
        ),
        (json.dumps([{"id": "x", "conversations": []}]), "no conversation has a complete"),
    ],
)
def test_malformed_files_raise_errors_naming_the_file_and_problem(
    tmp_path, content, problem
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WorkloadError) as error:
        _load(path)
    assert str(path) in str(error.value)
    assert problem in str(error.value)


def test_a_missing_file_is_a_clear_error_not_a_download(tmp_path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(WorkloadError, match="no such file") as error:
        _load(path)
    assert str(path) in str(error.value)
