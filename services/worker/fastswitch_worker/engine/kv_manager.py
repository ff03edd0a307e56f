"""GPU and host KV block ownership: allocation, swap plans, reuse of host copies.

Pure bookkeeping (no torch): it decides which blocks a copy moves; the Swapper moves them.
Host copies are a cache: a running request's host copy and a finished turn's KV may be dropped
under memory pressure (least recently used first); a swapped-out request's copy never is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fastswitch_worker.engine.block_allocator import BlockAllocator, OutOfBlocksError
from fastswitch_worker.engine.block_table import BlockTable
from fastswitch_worker.engine.extents import CopyExtent, pair_runs
from fastswitch_worker.engine.reuse_cache import (
    ConversationCache,
    ConversationKV,
    block_hash_chain,
    matched_prefix_len,
    prefix_hash,
)
from fastswitch_worker.engine.sequence import Request, RequestStatus


class SwapDirection(enum.Enum):
    OUT = "out"  # GPU -> host
    IN = "in"  # host -> GPU


@dataclass(frozen=True)
class SwapPlan:
    request_id: str
    direction: SwapDirection
    extents: tuple[CopyExtent, ...]  # src/dst block ids in the pools of the direction
    num_tokens: int  # tokens whose K/V is valid at the destination once copied

    @property
    def num_blocks(self) -> int:
        return sum(e.num_blocks for e in self.extents)


@dataclass(frozen=True)
class KVLayout:
    block_size: int
    num_gpu_blocks: int
    num_host_blocks: int
    is_block_groups: bool  # False = vLLM-style single blocks
    is_reuse: bool  # keep host copies valid across swap-ins and turns
    max_group_blocks: int = 64


@dataclass(frozen=True)
class PublishedKV:
    conversation_id: str
    num_tokens: int
    prefix_hash: str
    num_blocks: int


class KVManager:
    """Owns both allocators, the requests' tables and the conversation cache.

    Every method mutates and must be called from the engine thread only.
    """

    def __init__(self, layout: KVLayout) -> None:
        self.layout = layout
        self.gpu = BlockAllocator(layout.num_gpu_blocks, max_group_blocks=layout.max_group_blocks,
                                  is_contiguous=layout.is_block_groups)
        self.host = BlockAllocator(layout.num_host_blocks, max_group_blocks=layout.max_group_blocks,
                                   is_contiguous=layout.is_block_groups)
        self.conversations = ConversationCache()
        self._gpu_owners: dict[str, Request] = {}  # requests holding a GPU table
        # Requests whose host copy may be dropped under pressure (not swapped out).
        self._droppable_host_copies: dict[str, Request] = {}
        self._evicted_conversation_ids: list[str] = []  # since take_evicted_conversation_ids()

    # ---- GPU side -------------------------------------------------------------------------
    def _new_table(self, allocator: BlockAllocator) -> BlockTable:
        # A group never exceeds an eighth of its pool: one request's reservation must not
        # crowd out the others on a small pool.
        max_group = min(self.layout.max_group_blocks, max(1, allocator.num_blocks // 8))
        max_group = max_group if self.layout.is_block_groups else 1
        return BlockTable(allocator, self.layout.block_size, max_group_blocks=max_group)

    def reserve_gpu(self, request: Request, num_tokens: int) -> bool:
        """Grow the request's GPU table to cover num_tokens; False (nothing changed) if full.

        Block groups reserve ahead of need; when the pool runs short, other requests' unused
        reservations are returned first, so no request waits while enough blocks exist.
        """
        if request.gpu_table is None:
            request.gpu_table = self._new_table(self.gpu)
            self._gpu_owners[request.request_id] = request
        for attempt in range(2):
            try:
                request.gpu_table.ensure_capacity(num_tokens)
                return True
            except OutOfBlocksError:
                if attempt == 0 and not self._reclaim_reservations(request):
                    break
        if request.gpu_table.num_blocks == 0:
            self.free_gpu(request)
        return False

    def _reclaim_reservations(self, requester: Request) -> bool:
        """Trim every other table to the tokens it holds; True if any block came back."""
        num_free_before = self.gpu.num_free_blocks
        for owner in self._gpu_owners.values():
            if owner is not requester and owner.gpu_table is not None:
                owner.gpu_table.truncate(owner.num_tokens)  # never below its KV
        return self.gpu.num_free_blocks > num_free_before

    def free_gpu(self, request: Request) -> None:
        if request.gpu_table is not None:
            request.gpu_table.free_all()
            request.gpu_table = None
        self._gpu_owners.pop(request.request_id, None)

    def num_blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.layout.block_size)

    # ---- swap plans -----------------------------------------------------------------------
    def plan_swap_out(self, request: Request) -> SwapPlan:
        """Reserve host blocks and plan the GPU -> host copy of the request's computed KV.

        With reuse, blocks already valid on the host are not copied again: only the last,
        partially valid block and the blocks after it. Raises OutOfBlocksError (nothing
        changed) when host memory cannot hold the request even after evicting the cache.
        """
        assert request.gpu_table is not None
        num_tokens = request.num_computed_tokens
        request.gpu_table.truncate(num_tokens)  # unused reservation holds nothing: no copy
        if not self.layout.is_reuse:
            self.drop_host_copy(request)
        if request.host_table is None:
            request.host_table = self._new_table(self.host)
        self._reserve_host(request.host_table, num_tokens, protect=request)
        self._droppable_host_copies.pop(request.request_id, None)
        first_block = request.num_host_valid_tokens // self.layout.block_size
        num_blocks = self.num_blocks_for(num_tokens)
        src = request.gpu_table.block_ids()[first_block:num_blocks]
        dst = request.host_table.block_ids()[first_block:num_blocks]
        return SwapPlan(request.request_id, SwapDirection.OUT, self._copy_plan(src, dst), num_tokens)

    def plan_swap_in(self, request: Request) -> SwapPlan | None:
        """Reserve GPU blocks for the request's host-valid KV and plan the copy; None if full."""
        assert request.host_table is not None and request.gpu_table is None
        num_tokens = request.num_host_valid_tokens
        if not self.reserve_gpu(request, num_tokens):
            self.free_gpu(request)
            return None
        num_blocks = self.num_blocks_for(num_tokens)
        src = request.host_table.block_ids()[:num_blocks]
        dst = request.gpu_table.block_ids()[:num_blocks]
        return SwapPlan(request.request_id, SwapDirection.IN, self._copy_plan(src, dst), num_tokens)

    def _copy_plan(self, src: list[int], dst: list[int]) -> tuple[CopyExtent, ...]:
        if self.layout.is_block_groups:
            return tuple(pair_runs(src, dst))
        return tuple(CopyExtent(s, d, 1) for s, d in zip(src, dst, strict=True))

    def complete_swap_out(self, request: Request, plan: SwapPlan, *, is_cancelled: bool) -> None:
        """The GPU -> host copy finished. Frees the GPU blocks unless a resume cancelled it."""
        request.num_host_valid_tokens = plan.num_tokens
        if is_cancelled:
            self._track_droppable(request)
        else:
            self.free_gpu(request)

    def complete_swap_in(self, request: Request, plan: SwapPlan) -> None:
        """The host -> GPU copy finished; the host copy stays only with reuse on."""
        request.num_computed_tokens = plan.num_tokens
        if self.layout.is_reuse:
            self._track_droppable(request)
        else:
            self.drop_host_copy(request)

    # ---- host side ------------------------------------------------------------------------
    def _track_droppable(self, request: Request) -> None:
        self._droppable_host_copies[request.request_id] = request

    def drop_host_copy(self, request: Request) -> None:
        self._droppable_host_copies.pop(request.request_id, None)
        if request.host_table is not None:
            request.host_table.free_all()
            request.host_table = None
        request.num_host_valid_tokens = 0

    def _reserve_host(self, table: BlockTable, num_tokens: int, *, protect: Request) -> None:
        while True:
            try:
                table.ensure_capacity(num_tokens)
                return
            except OutOfBlocksError:
                if not self._evict_one_host_copy(protect):
                    raise

    def _evict_one_host_copy(self, protect: Request) -> bool:
        """Free the least valuable host copy: LRU conversation first, then running copies."""
        entry = self.conversations.pop_lru()
        if entry is not None:
            entry.host_table.free_all()
            self._evicted_conversation_ids.append(entry.conversation_id)
            return True
        for request in list(self._droppable_host_copies.values()):
            # Never a copy some thread is still writing (a cancelled swap-out in flight).
            if (request is not protect and request.status is not RequestStatus.SWAPPING_IN
                    and request.num_inflight_copies == 0):
                self.drop_host_copy(request)
                return True
        return False

    # ---- multi-turn reuse -----------------------------------------------------------------
    def claim_conversation_kv(self, request: Request) -> int:
        """Give a new turn its conversation's host KV if its prompt extends it.

        Returns the number of prompt tokens whose K/V can be swapped in instead of prefilled
        (at most prompt - 1: the last prompt token is always computed to get logits).
        """
        if not (self.layout.is_reuse and request.conversation_id):
            return 0
        entry = self.conversations.take(request.conversation_id)
        if entry is None:
            return 0
        matched = matched_prefix_len(entry, request.prompt_token_ids, self.layout.block_size)
        matched = min(matched, request.num_prompt_tokens - 1)
        if matched <= 0:
            entry.host_table.free_all()
            self._evicted_conversation_ids.append(entry.conversation_id)
            return 0
        entry.host_table.truncate(matched)
        request.host_table = entry.host_table
        request.num_host_valid_tokens = matched
        request.num_reused_tokens = matched
        return matched

    def retire(self, request: Request) -> PublishedKV | None:
        """A finished turn's host copy (valid for all its computed KV) becomes reusable."""
        assert request.host_table is not None
        self._droppable_host_copies.pop(request.request_id, None)
        token_ids = request.all_token_ids[: request.num_host_valid_tokens]
        entry = ConversationKV(request.conversation_id, request.host_table, token_ids,
                               block_hash_chain(token_ids, self.layout.block_size))
        request.host_table = None
        request.num_host_valid_tokens = 0
        replaced = self.conversations.put(entry)
        if replaced is not None:
            replaced.host_table.free_all()
        return PublishedKV(entry.conversation_id, entry.num_tokens, prefix_hash(token_ids),
                           entry.host_table.num_blocks)

    def evict_conversation(self, conversation_id: str) -> bool:
        """Mutates: frees a conversation's host KV (kvstore asked); False if not held."""
        entry = self.conversations.take(conversation_id)
        if entry is None:
            return False
        entry.host_table.free_all()
        return True

    def take_evicted_conversation_ids(self) -> list[str]:
        """Mutates: returns the conversations whose host KV was evicted since the last call
        (to tell the kvstore) and forgets them."""
        evicted, self._evicted_conversation_ids = self._evicted_conversation_ids, []
        return evicted

    def release(self, request: Request) -> None:
        """Free everything a finished or aborted request holds on both sides."""
        self.free_gpu(request)
        self.drop_host_copy(request)

    def allocation_figures(self, requests: list[Request]) -> tuple[float, int]:
        """(mean GPU extents per request, reserved-but-unused GPU blocks) over `requests`."""
        tables = [(r, r.gpu_table) for r in requests if r.gpu_table is not None and r.gpu_table.num_blocks]
        if not tables:
            return 0.0, 0
        mean_extents = sum(len(t.extents()) for _, t in tables) / len(tables)
        unused = sum(t.num_reserved_unused_blocks(min(r.num_tokens, t.num_tokens_capacity))
                     for r, t in tables)
        return mean_extents, unused

    def check_integrity(self) -> None:
        self.gpu.check_integrity()
        self.host.check_integrity()
