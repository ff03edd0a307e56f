"""Tokenizers: a checkpoint's tokenizer.json, or a byte-level fallback for dummy models.

The engine stops a sequence on `Tokenizer.eos_token_ids`. For a checkpoint these come from
generation_config.json, config.json and tokenizer_config.json together (any of them ends a
turn); for the byte tokenizer they are its own special ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import tokenizers

TOKENIZER_FILE = "tokenizer.json"
NUM_BYTE_IDS = 256
DEFAULT_BYTE_BOS_ID = 256
DEFAULT_BYTE_EOS_ID = 257


class ModelSpecials(Protocol):
    """What a tokenizer needs to know of its model (a worker's ModelConfig, or the figures a
    worker announces to the scheduler)."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None


class TokenizerLoadError(ValueError):
    """A tokenizer cannot be loaded or does not fit the model."""


class Tokenizer(Protocol):
    """What the engine needs from a tokenizer. Implementations are immutable."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def eos_token_ids(self) -> tuple[int, ...]: ...

    @property
    def bos_token_id(self) -> int | None: ...

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`, with BOS when the tokenizer adds one and add_special_tokens."""
        ...

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `token_ids`; bytes of an incomplete UTF-8 character decode to U+FFFD."""
        ...


class ByteTokenizer:
    """Ids 0..255 are UTF-8 bytes; BOS/EOS sit above them; any other id decodes to nothing."""

    def __init__(
        self,
        vocab_size: int,
        *,
        bos_token_id: int | None = DEFAULT_BYTE_BOS_ID,
        eos_token_ids: tuple[int, ...] = (DEFAULT_BYTE_EOS_ID,),
    ) -> None:
        if vocab_size < NUM_BYTE_IDS:
            raise TokenizerLoadError(
                f"the byte tokenizer needs a vocabulary of at least {NUM_BYTE_IDS}, the model "
                f"has {vocab_size}"
            )
        special_ids = (*eos_token_ids, *(() if bos_token_id is None else (bos_token_id,)))
        for token_id in special_ids:
            if not NUM_BYTE_IDS <= token_id < vocab_size:
                raise TokenizerLoadError(
                    f"byte tokenizer special id {token_id} must be in [{NUM_BYTE_IDS}, {vocab_size})"
                )
        self._vocab_size = vocab_size
        self._bos_token_id = bos_token_id
        self._eos_token_ids = tuple(eos_token_ids)

    @classmethod
    def for_model(cls, config: ModelSpecials) -> ByteTokenizer:
        """Byte tokenizer for a model: its own BOS/EOS ids where they lie above the bytes,
        else 256/257 when the vocabulary has room, else no specials."""
        vocab_size = config.vocab_size
        model_specials_fit = all(
            NUM_BYTE_IDS <= token_id < vocab_size
            for token_id in (*config.eos_token_ids, config.bos_token_id)
            if token_id is not None
        )
        if config.eos_token_ids and model_specials_fit:
            return cls(
                vocab_size, bos_token_id=config.bos_token_id, eos_token_ids=config.eos_token_ids
            )
        if vocab_size > DEFAULT_BYTE_EOS_ID:
            return cls(vocab_size)
        return cls(vocab_size, bos_token_id=None, eos_token_ids=())

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self._eos_token_ids

    @property
    def bos_token_id(self) -> int | None:
        return self._bos_token_id

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        prefix = (
            [self._bos_token_id] if add_special_tokens and self._bos_token_id is not None else []
        )
        return prefix + list(text.encode("utf-8"))

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        pieces: list[str] = []
        pending_bytes = bytearray()
        for token_id in token_ids:
            if 0 <= token_id < NUM_BYTE_IDS:
                pending_bytes.append(token_id)
                continue
            if skip_special_tokens:
                continue
            name = self._special_name(token_id)
            if name:
                pieces.append(pending_bytes.decode("utf-8", errors="replace"))
                pending_bytes.clear()
                pieces.append(name)
        pieces.append(pending_bytes.decode("utf-8", errors="replace"))
        return "".join(pieces)

    def _special_name(self, token_id: int) -> str:
        if token_id == self._bos_token_id:
            return "<|bos|>"
        if token_id in self._eos_token_ids:
            return "<|eos|>"
        return ""


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer (tokenizer.json) with the checkpoint's specials."""

    def __init__(
        self,
        tokenizer: tokenizers.Tokenizer,
        *,
        bos_token_id: int | None,
        eos_token_ids: tuple[int, ...],
    ) -> None:
        self._tokenizer = tokenizer
        self._bos_token_id = bos_token_id
        self._eos_token_ids = eos_token_ids

    @classmethod
    def from_dir(
        cls, directory: str | os.PathLike[str], model_config: ModelSpecials | None = None
    ) -> HFTokenizer:
        """Load `directory`/tokenizer.json; specials from model_config and the JSON configs there."""
        directory = Path(directory)
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises plain Exception on bad files
            raise TokenizerLoadError(f"cannot load {directory / TOKENIZER_FILE}: {exc}") from exc
        generation_config = read_json_object(directory / "generation_config.json")
        tokenizer_config = read_json_object(directory / "tokenizer_config.json")
        model_eos_ids = model_config.eos_token_ids if model_config is not None else ()
        model_bos_id = model_config.bos_token_id if model_config is not None else None
        eos_candidates = [
            *_as_id_list(generation_config.get("eos_token_id")),
            *model_eos_ids,
            *_token_ids_of(tokenizer, tokenizer_config.get("eos_token")),
        ]
        bos_candidates = [
            *([] if model_bos_id is None else [model_bos_id]),
            *_as_id_list(generation_config.get("bos_token_id")),
            *_token_ids_of(tokenizer, tokenizer_config.get("bos_token")),
        ]
        return cls(
            tokenizer,
            bos_token_id=bos_candidates[0] if bos_candidates else None,
            eos_token_ids=tuple(dict.fromkeys(eos_candidates)),
        )

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        return self._eos_token_ids

    @property
    def bos_token_id(self) -> int | None:
        return self._bos_token_id

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, token_ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(list(token_ids), skip_special_tokens=skip_special_tokens)


def load_tokenizer(model: str | os.PathLike[str], model_config: ModelSpecials) -> Tokenizer:
    """The checkpoint's tokenizer.json when `model` is a directory with one, else bytes.

    Raises TokenizerLoadError when the tokenizer can emit ids the model has no embedding for.
    """
    directory = Path(model)
    if directory.is_dir() and (directory / TOKENIZER_FILE).is_file():
        tokenizer: Tokenizer = HFTokenizer.from_dir(directory, model_config)
    elif directory.is_dir() and (directory / "tokenizer.model").is_file():
        raise TokenizerLoadError(
            f"{directory} has only a SentencePiece tokenizer.model; a tokenizer.json is needed"
        )
    else:
        tokenizer = ByteTokenizer.for_model(model_config)
    if tokenizer.vocab_size > model_config.vocab_size:
        raise TokenizerLoadError(
            f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only "
            f"{model_config.vocab_size}"
        )
    return tokenizer


def read_json_object(path: Path) -> dict[str, Any]:
    """A checkpoint's JSON file as a dict ({} when absent or not an object); raises
    TokenizerLoadError when it cannot be read or parsed."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerLoadError(f"cannot parse {path}: {exc}") from exc
    return value if isinstance(value, dict) else {}


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, list):
        return [int(v) for v in value]
    return [int(value)]


def _token_ids_of(tokenizer: tokenizers.Tokenizer, token: Any) -> list[int]:
    """Id of a tokenizer_config.json special token ("</s>" or {"content": "</s>", ...})."""
    content = token.get("content") if isinstance(token, dict) else token
    if not isinstance(content, str):
        return []
    token_id = tokenizer.token_to_id(content)
    return [] if token_id is None else [token_id]


class IncrementalDetokenizer:
    """Turns a stream of generated ids into text deltas, never splitting a UTF-8 character.

    Each `feed` decodes a short window of recent tokens twice: up to what was already emitted
    (prefix) and up to the newest token; the difference is the delta. While the new text ends
    in U+FFFD (a character whose bytes have not all arrived), it is held back. Decoding a
    window rather than single tokens keeps tokenizers that merge or strip spaces at token
    boundaries correct. Seeding with the prompt's last ids gives the first generated token the
    same context.
    """

    _NUM_PROMPT_CONTEXT_IDS = 5

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        prompt_token_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
    ) -> None:
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._token_ids: list[int] = list(prompt_token_ids[-self._NUM_PROMPT_CONTEXT_IDS :])
        # Invariant: token_ids[prefix_offset:read_offset] decodes to text already emitted (or
        # prompt context); token_ids[read_offset:] has not been emitted yet.
        self._prefix_offset = 0
        self._read_offset = len(self._token_ids)

    def feed(self, new_token_ids: Sequence[int]) -> str:
        """Append ids; return the newly complete text (possibly ""). Mutates self.

        When the newest ids end mid-character, the text up to the last id that ends on a
        character boundary is still emitted; the rest waits for the next feed.
        """
        self._token_ids.extend(new_token_ids)
        prefix_text = self._decode(self._prefix_offset, self._read_offset)
        # Longest window first; usually one id arrives and this loop runs once.
        for end in range(len(self._token_ids), self._read_offset, -1):
            text = self._decode(self._prefix_offset, end)
            if len(text) > len(prefix_text) and not text.endswith("\ufffd"):
                self._prefix_offset, self._read_offset = self._read_offset, end
                return text[len(prefix_text) :]
        return ""

    def flush(self) -> str:
        """Return whatever is still held back (with U+FFFD for incomplete bytes). Mutates self."""
        prefix_text = self._decode(self._prefix_offset, self._read_offset)
        text = self._decode(self._prefix_offset, len(self._token_ids))
        self._prefix_offset, self._read_offset = self._read_offset, len(self._token_ids)
        return text[len(prefix_text) :]

    def _decode(self, start: int, end: int) -> str:
        return self._tokenizer.decode(
            self._token_ids[start:end], skip_special_tokens=self._skip_special_tokens
        )
