"""A swap-out whose blocks a resume of the same step needs is copied at once (urgent), so the
resumed request does not wait a step or two for an asynchronous copy to free them. Pure
Python on tiny pools (block_size 4, 8 GPU blocks), as test_scheduler.py."""

from __future__ import annotations

from fastswitch_worker.engine.sequence import RequestStatus

RUNNING, SWAPPED = RequestStatus.RUNNING, RequestStatus.SWAPPED
SWAPPING_OUT, SWAPPING_IN = RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPING_IN


def _a_running_and_b_swapped(w):
    """b swapped out (4 blocks of KV on the host), then a running on 5 of the 8 GPU blocks:
    the 3 free blocks are not enough for b's swap-in."""
    w.add("b", 16)
    w.step()
    w.scheduler.request_preempt(w.requests["b"])
    w.step()
    w.finish_copies()
    assert w.status("b") is SWAPPED
    w.add("a", 20)  # 5 blocks: 3 left, b's swap-in needs 4
    w.step()
    return w


def test_a_swap_out_that_makes_room_for_a_resume_is_copied_at_once(make_worker) -> None:
    w = _a_running_and_b_swapped(make_worker(num_host_blocks=16, blocking_swap_in_max_blocks=0))
    w.scheduler.request_preempt(w.requests["a"])
    w.scheduler.request_resume(w.requests["b"])
    output = w.step()
    assert [p.request_id for p in output.swap_outs] == ["a"] and "a" in output.blocking_ids
    assert w.status("a") is SWAPPED and w.requests["a"].gpu_table is None
    # b's swap-in got a's blocks in the same step (asynchronous itself: large enough).
    assert [p.request_id for p in output.swap_ins] == ["b"] and w.status("b") is SWAPPING_IN
    w.finish_copies()
    assert w.batch(w.step()) == {"b": 1}
    w.kv.check_integrity()


def test_a_swap_out_with_room_to_spare_stays_asynchronous(make_worker) -> None:
    w = make_worker(num_host_blocks=16, blocking_swap_in_max_blocks=0)
    w.add("b", 4)  # 1 block
    w.step()
    w.scheduler.request_preempt(w.requests["b"])
    w.step()
    w.finish_copies()
    w.add("a", 8)  # 2 blocks: 6 free, b's swap-in needs 1
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    w.scheduler.request_resume(w.requests["b"])
    output = w.step()
    assert "a" not in output.blocking_ids and w.status("a") is SWAPPING_OUT
    assert w.status("b") is SWAPPING_IN


def test_the_urgent_switch_gives_the_same_tokens_as_waiting_for_the_copy(make_worker) -> None:
    # Only the timing of the copy changes: both requests produce the same tokens either way.
    def run(resume_with_preempt: bool) -> dict[str, list[int]]:
        w = _a_running_and_b_swapped(make_worker(num_host_blocks=16, blocking_swap_in_max_blocks=0))
        w.scheduler.request_preempt(w.requests["a"])
        if resume_with_preempt:
            w.scheduler.request_resume(w.requests["b"])
        for _ in range(3):
            w.step()
            w.finish_copies()
        if not resume_with_preempt:
            w.scheduler.request_resume(w.requests["b"])
        for _ in range(3):
            w.step()
            w.finish_copies()
        w.scheduler.request_preempt(w.requests["b"])
        w.scheduler.request_resume(w.requests["a"])
        for _ in range(4):
            w.step()
            w.finish_copies()
        return {rid: list(w.requests[rid].output_token_ids[:3]) for rid in "ab"}

    assert run(True) == run(False)
