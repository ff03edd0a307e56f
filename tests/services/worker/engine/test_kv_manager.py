"""KVManager bookkeeping on tiny pools (pure Python)."""

from __future__ import annotations

from fastswitch_worker.engine.kv_manager import KVLayout, KVManager, SwapDirection
from fastswitch_worker.engine.sequence import Request


def manager(**overrides) -> KVManager:
    settings = dict(block_size=4, num_gpu_blocks=64, num_host_blocks=64, is_block_groups=True,
                    is_reuse=True, max_group_blocks=64)
    settings.update(overrides)
    return KVManager(KVLayout(**settings))


def request(request_id: str, num_prompt_tokens: int) -> Request:
    return Request(request_id, list(range(1, num_prompt_tokens + 1)))


def test_unused_reservations_are_reclaimed_before_a_request_is_refused() -> None:
    kv = manager()
    hog, newcomer = request("hog", 10), request("new", 200)
    assert kv.reserve_gpu(hog, 100)  # 25 blocks held for a 10-token request
    assert kv.reserve_gpu(newcomer, 200)  # needs 50 of 39 free: the hog's spare comes back
    assert hog.gpu_table.num_blocks == 3 and newcomer.gpu_table.num_blocks == 50
    kv.check_integrity()


def test_a_refused_reservation_changes_nothing() -> None:
    kv = manager()
    first, second = request("a", 200), request("b", 100)
    assert kv.reserve_gpu(first, 200)
    free_before = kv.gpu.num_free_blocks
    assert not kv.reserve_gpu(second, 100)
    assert kv.gpu.num_free_blocks == free_before and second.gpu_table is None
    kv.check_integrity()


def test_second_swap_out_copies_only_blocks_changed_since_the_first() -> None:
    kv = manager()
    r = request("r", 10)
    assert kv.reserve_gpu(r, 10)
    r.num_computed_tokens = 10
    first = kv.plan_swap_out(r)
    kv.complete_swap_out(r, first, is_cancelled=False)
    assert first.num_blocks == 3 and r.num_host_valid_tokens == 10
    kv.complete_swap_in(r, kv.plan_swap_in(r))
    r.prompt_token_ids += [7] * 9  # decoded 9 more tokens: 19 in all
    assert kv.reserve_gpu(r, 19)
    r.num_computed_tokens = 19
    second = kv.plan_swap_out(r)
    assert second.direction is SwapDirection.OUT
    # Blocks 0-1 (tokens 0-7) are still valid on the host; block 2 was partial: 2, 3, 4 go.
    assert second.num_blocks == 3 and second.extents[0].src_start == r.gpu_table.block_ids()[2]
    kv.check_integrity()


def test_without_reuse_every_swap_out_copies_everything() -> None:
    kv = manager(is_reuse=False)
    r = request("r", 10)
    kv.reserve_gpu(r, 10)
    r.num_computed_tokens = 10
    kv.complete_swap_out(r, kv.plan_swap_out(r), is_cancelled=False)
    kv.complete_swap_in(r, kv.plan_swap_in(r))
    assert r.host_table is None and r.num_host_valid_tokens == 0
    assert kv.plan_swap_out(r).num_blocks == 3
