"""Tokenizers (tokenizer.json and byte fallback) and the incremental detokenizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fastswitch.tokenizer import (
    ByteTokenizer,
    HFTokenizer,
    IncrementalDetokenizer,
    Tokenizer,
    TokenizerLoadError,
    load_tokenizer,
)
from fastswitch_worker.engine.model_config import ModelConfig
from fastswitch_worker.engine.presets import get_preset

TEXTS = [
    "hello world",
    "héllo 世界 🙂",
    "unseen: ü, ß, Ω, 日本, 🚀🚀, tabs\tand\nnewlines",
    "",
]
MULTI_BYTE_TEXT = "héllo 世界 🙂 naïve ∑ 🚀"


def model_config_with(vocab_size: int, **changes: object) -> ModelConfig:
    return dataclasses.replace(get_preset("tiny"), vocab_size=vocab_size, **changes)


@pytest.fixture
def bpe_tokenizer(hf_byte_bpe_tokenizer_dir: Path) -> HFTokenizer:
    config = model_config_with(320, bos_token_id=None, eos_token_ids=(3,))
    tokenizer = load_tokenizer(str(hf_byte_bpe_tokenizer_dir), config)
    assert isinstance(tokenizer, HFTokenizer)
    return tokenizer


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_tokenizer_round_trips_text(bpe_tokenizer: HFTokenizer, text: str) -> None:
    token_ids = bpe_tokenizer.encode(text)
    assert token_ids[0] == bpe_tokenizer.bos_token_id
    assert bpe_tokenizer.decode(token_ids) == text
    assert bpe_tokenizer.encode(text, add_special_tokens=False) == token_ids[1:]


def test_bpe_tokenizer_specials_come_from_all_checkpoint_configs(
    bpe_tokenizer: HFTokenizer,
) -> None:
    # generation_config.json says 5, the model config 3, tokenizer_config.json "</s>" (id 1).
    assert bpe_tokenizer.eos_token_ids == (5, 3, 1)
    assert bpe_tokenizer.bos_token_id == 0  # "<s>" from tokenizer_config.json
    assert bpe_tokenizer.vocab_size <= 300


def test_tokenizer_larger_than_model_vocabulary_is_rejected(
    hf_byte_bpe_tokenizer_dir: Path,
) -> None:
    with pytest.raises(TokenizerLoadError, match="model embeds only 260"):
        load_tokenizer(str(hf_byte_bpe_tokenizer_dir), model_config_with(260))


@pytest.mark.parametrize("text", TEXTS)
def test_byte_tokenizer_round_trips_text(text: str) -> None:
    tokenizer = ByteTokenizer(300)
    token_ids = tokenizer.encode(text)
    assert token_ids[0] == 256
    assert all(0 <= i < 256 for i in token_ids[1:])
    assert tokenizer.decode(token_ids) == text


def test_byte_tokenizer_decodes_specials_and_unused_ids_to_nothing() -> None:
    tokenizer = ByteTokenizer(300)
    assert tokenizer.decode([256, 104, 299, 105, 257]) == "hi"
    assert tokenizer.decode([256, 104, 105, 257], skip_special_tokens=False) == "<|bos|>hi<|eos|>"


def test_byte_tokenizer_takes_model_specials_above_the_bytes() -> None:
    tokenizer = ByteTokenizer.for_model(get_preset("llama3-8b"))
    assert tokenizer.bos_token_id == 128000
    assert tokenizer.eos_token_ids == (128001, 128009)


def test_byte_tokenizer_moves_specials_that_collide_with_bytes() -> None:
    tokenizer = ByteTokenizer.for_model(model_config_with(300, bos_token_id=1, eos_token_ids=(2,)))
    assert (tokenizer.bos_token_id, tokenizer.eos_token_ids) == (256, (257,))


def test_byte_tokenizer_needs_room_for_the_bytes() -> None:
    with pytest.raises(TokenizerLoadError, match="at least 256"):
        ByteTokenizer(200)
    with pytest.raises(TokenizerLoadError, match=r"must be in \[256, 258\)"):
        ByteTokenizer(258, eos_token_ids=(300,))


def test_load_tokenizer_falls_back_to_bytes_for_presets_and_bare_directories(
    hf_tiny_llama_dir: Path,
) -> None:
    assert isinstance(load_tokenizer("tiny", get_preset("tiny")), ByteTokenizer)
    bare = load_tokenizer(str(hf_tiny_llama_dir), model_config_with(300))
    assert isinstance(bare, ByteTokenizer)


def test_sentencepiece_only_directory_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.model").write_bytes(b"\x00")
    with pytest.raises(TokenizerLoadError, match="tokenizer.json is needed"):
        load_tokenizer(str(tmp_path), model_config_with(300))


def byte_and_bpe_tokenizers(bpe_tokenizer: HFTokenizer) -> list[Tokenizer]:
    return [ByteTokenizer(300), bpe_tokenizer]


def test_bpe_tokens_split_multi_byte_characters(bpe_tokenizer: HFTokenizer) -> None:
    """Precondition of the detokenizer tests: some single tokens end mid-character."""
    token_ids = bpe_tokenizer.encode(MULTI_BYTE_TEXT, add_special_tokens=False)
    assert any("\ufffd" in bpe_tokenizer.decode([i]) for i in token_ids)


@pytest.mark.parametrize("tokenizer_kind", ["byte", "bpe"])
def test_incremental_deltas_never_break_a_character_and_add_up_to_full_decode(
    tokenizer_kind: str, bpe_tokenizer: HFTokenizer
) -> None:
    tokenizer = ByteTokenizer(300) if tokenizer_kind == "byte" else bpe_tokenizer
    token_ids = tokenizer.encode(MULTI_BYTE_TEXT)
    detokenizer = IncrementalDetokenizer(tokenizer)
    deltas = [detokenizer.feed([token_id]) for token_id in token_ids]
    deltas.append(detokenizer.flush())
    assert all("\ufffd" not in delta for delta in deltas)
    assert "".join(deltas) == tokenizer.decode(token_ids) == MULTI_BYTE_TEXT
    assert "" in deltas  # something was held back until its character completed


def test_incremental_detokenizer_holds_back_partial_bytes_until_complete() -> None:
    detokenizer = IncrementalDetokenizer(ByteTokenizer(300))
    smile = list("🙂".encode())
    assert detokenizer.feed([104]) == "h"
    assert detokenizer.feed(smile[:1]) == ""
    assert detokenizer.feed(smile[1:3]) == ""
    assert detokenizer.feed(smile[3:] + [105]) == "🙂i"


def test_flush_releases_bytes_that_never_completed() -> None:
    detokenizer = IncrementalDetokenizer(ByteTokenizer(300))
    assert detokenizer.feed([104, 0xE4, 0xB8]) == "h"
    assert detokenizer.flush() == "\ufffd"
    assert detokenizer.flush() == ""


def test_prompt_context_does_not_leak_into_deltas(bpe_tokenizer: HFTokenizer) -> None:
    prompt_ids = bpe_tokenizer.encode("the quick brown")
    generated_ids = bpe_tokenizer.encode(" fox 世界", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(bpe_tokenizer, prompt_token_ids=prompt_ids)
    text = "".join(detokenizer.feed([i]) for i in generated_ids) + detokenizer.flush()
    assert text == " fox 世界"
