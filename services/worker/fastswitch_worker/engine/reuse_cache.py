"""Host-resident KV of finished conversation turns, kept for the next turn (LRU).

An entry owns a host BlockTable whose first `len(token_ids)` token slots hold valid K/V for
exactly `token_ids`. A new turn reuses the longest prefix of its prompt that equals the entry's
tokens, checked block by block through a content hash chain, so a prompt that diverges from the
previous turn never reads stale KV.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from fastswitch_worker.engine.block_table import BlockTable


def block_hash_chain(token_ids: list[int], block_size: int) -> list[str]:
    """Hash of every full block, each chained on the previous one (prefix identity)."""
    hashes: list[str] = []
    previous = b""
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        block = token_ids[start : start + block_size]
        digest = hashlib.blake2b(previous + repr(block).encode(), digest_size=16).digest()
        hashes.append(digest.hex())
        previous = digest
    return hashes


def prefix_hash(token_ids: list[int]) -> str:
    """Hash of a whole token sequence, published to the kvstore."""
    return hashlib.blake2b(repr(token_ids).encode(), digest_size=16).hexdigest()


@dataclass
class ConversationKV:
    conversation_id: str
    host_table: BlockTable
    token_ids: list[int]  # tokens whose K/V the host table holds, in order
    block_hashes: list[str]

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


def matched_prefix_len(entry: ConversationKV, prompt_token_ids: list[int], block_size: int) -> int:
    """Tokens of `prompt_token_ids` whose K/V the entry holds (a common prefix)."""
    prompt_hashes = block_hash_chain(prompt_token_ids, block_size)
    num_full_blocks = 0
    for ours, theirs in zip(entry.block_hashes, prompt_hashes, strict=False):
        if ours != theirs:
            break
        num_full_blocks += 1
    matched = num_full_blocks * block_size
    # The tail beyond the matched full blocks: compare tokens directly (partial block).
    limit = min(entry.num_tokens, len(prompt_token_ids))
    while matched < limit and entry.token_ids[matched] == prompt_token_ids[matched]:
        matched += 1
    return matched


class ConversationCache:
    """LRU index of ConversationKV by conversation id. Pure bookkeeping; frees nothing itself."""

    def __init__(self) -> None:
        self._entries: OrderedDict[str, ConversationKV] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, conversation_id: str) -> bool:
        return conversation_id in self._entries

    def put(self, entry: ConversationKV) -> ConversationKV | None:
        """Mutates: inserts as most recent; returns the replaced entry (caller frees it)."""
        replaced = self._entries.pop(entry.conversation_id, None)
        self._entries[entry.conversation_id] = entry
        return replaced

    def take(self, conversation_id: str) -> ConversationKV | None:
        """Mutates: removes and returns the entry (its new owner is a request)."""
        return self._entries.pop(conversation_id, None)

    def pop_lru(self) -> ConversationKV | None:
        """Mutates: removes and returns the least recently used entry."""
        if not self._entries:
            return None
        _, entry = self._entries.popitem(last=False)
        return entry

    def entries(self) -> list[ConversationKV]:
        return list(self._entries.values())
