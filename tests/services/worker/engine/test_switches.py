"""Switches and RequestQueues on tiny pools, pure Python: what follows a finished copy (the
request's status and queue, its blocks freed or kept, reuse bookkeeping) and the queue that
always matches a request's status."""

from __future__ import annotations

from dataclasses import replace

import pytest

from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.sequence import Request, RequestStatus
from fastswitch_worker.engine.switches import CopyFailedError, CopyKind


def preempted_in_flight(w, *request_ids: str, prompt: int = 8):
    """Requests that ran one step and whose swap-outs are now in flight."""
    for request_id in request_ids:
        w.add(request_id, prompt)
    w.step()
    for request_id in request_ids:
        w.scheduler.request_preempt(w.requests[request_id])
    w.step()
    assert all(w.status(r) is RequestStatus.SWAPPING_OUT for r in request_ids)
    return w


def abort(w, request_id: str) -> None:
    """What Engine.abort does to the bookkeeping."""
    w.scheduler.remove(w.requests[request_id], RequestStatus.ABORTED)
    w.switches.release_if_done(w.requests[request_id])
    w.check()


def test_a_request_counts_its_copies_in_flight_until_they_are_applied(make_worker) -> None:
    w = preempted_in_flight(make_worker(), "a")
    assert w.requests["a"].num_inflight_copies == 1
    assert [c.kind for c in w.copies.in_flight] == [CopyKind.SWAP_OUT]
    w.finish_copies()
    assert w.requests["a"].num_inflight_copies == 0


def test_an_aborted_request_keeps_its_blocks_until_its_copy_finishes(make_worker) -> None:
    w = preempted_in_flight(make_worker(), "a")
    abort(w, "a")
    assert w.kv.gpu.num_free_blocks == 6  # a copy thread still reads them
    w.finish_copies()
    assert w.kv.gpu.num_free_blocks == 8 and w.kv.host.num_free_blocks == 8


def test_a_finished_conversation_turn_is_retired_and_published_once_its_copy_lands(
        make_worker) -> None:
    w = make_worker()
    w.add("t1", 10, conversation_id="conv")
    w.step()
    turn = w.requests["t1"]
    w.scheduler.remove(turn, RequestStatus.FINISHED)
    w.switches.retire_or_release(turn, w.copies)
    assert [c.kind for c in w.copies.in_flight] == [CopyKind.RETIRE]
    assert w.kv.gpu.num_free_blocks == 5  # held while the copy reads them
    [published] = w.finish_copies()
    assert (published.conversation_id, published.num_tokens) == ("conv", 10)
    assert w.kv.gpu.num_free_blocks == 8 and "conv" in w.kv.conversations
    assert w.counters.num_retired_turns == 1


def test_a_finished_request_of_no_conversation_frees_its_kv_at_once(make_worker) -> None:
    w = make_worker()
    w.add("a", 10)
    w.step()
    w.scheduler.remove(w.requests["a"], RequestStatus.FINISHED)
    w.switches.retire_or_release(w.requests["a"], w.copies)
    assert not w.copies.in_flight and w.kv.gpu.num_free_blocks == 8


def test_a_next_turn_swaps_the_previous_turns_kv_in_and_prefills_only_new_tokens(
        make_worker) -> None:
    w = make_worker()
    w.add("t1", 10, conversation_id="conv")
    w.step()
    turn = w.requests["t1"]
    w.scheduler.remove(turn, RequestStatus.FINISHED)
    w.switches.retire_or_release(turn, w.copies)
    w.finish_copies()
    w.add("t2", turn.all_token_ids + [20, 21], conversation_id="conv")  # 13 tokens
    output = w.step()
    assert [p.num_tokens for p in output.swap_ins] == [10]
    assert w.batch(output) == {"t2": 3}  # swapped in at once (small), then joins the batch


def test_a_second_swap_out_copies_only_new_blocks_and_counts_the_rest_as_reused(
        make_worker) -> None:
    w = make_worker()
    w.add("a", 20)
    w.step()
    for _ in range(2):  # swap out, swap back in (small: at once), decode past a block
        w.scheduler.request_preempt(w.requests["a"])
        w.step()
        w.finish_copies()
        w.scheduler.request_resume(w.requests["a"])
        for _ in range(4):
            w.step()
    assert w.requests["a"].num_computed_tokens == 28
    w.scheduler.request_preempt(w.requests["a"])
    [plan] = w.step().swap_outs
    assert plan.num_blocks == 1  # tokens 24-27: the host copy holds blocks 0-5
    assert w.counters.num_swap_outs == 3
    assert w.counters.reused_bytes == (5 - 5) + (6 - 1) + (7 - 1)  # block_bytes is 1


def test_a_failed_copy_is_raised_after_the_others_are_applied_and_its_request_can_be_freed(
        make_worker) -> None:
    w = preempted_in_flight(make_worker(), "a", "b")
    finished = w.copies.finish()
    finished[0] = replace(finished[0], error=OSError("copy engine fault"))
    with pytest.raises(CopyFailedError, match="swap out of a failed") as raised:
        w.switches.apply_finished(finished, w.requests)
    assert isinstance(raised.value.__cause__, OSError)
    assert w.status("b") is RequestStatus.SWAPPED  # applied despite a's failure
    assert w.status("a") is RequestStatus.SWAPPING_OUT  # its data is not on the host
    assert w.requests["a"].num_inflight_copies == 0
    abort(w, "a")
    abort(w, "b")
    assert w.kv.gpu.num_free_blocks == 8 and w.kv.host.num_free_blocks == 8


def test_a_request_is_always_in_the_queue_its_status_names() -> None:
    queues = RequestQueues()
    a, b = Request("a", [1]), Request("b", [2])
    queues.add(a)
    queues.add(b)
    queues.move(a, RequestStatus.RUNNING)
    queues.move(a, RequestStatus.SWAPPING_OUT)
    assert list(queues.waiting) == [b] and queues.running == [] and queues.parked == {"a": a}
    queues.move(a, RequestStatus.SWAPPED)
    queues.move(a, RequestStatus.WAITING, to_front=True)
    assert list(queues.waiting) == [a, b]
    queues.move(b, RequestStatus.ABORTED)
    assert list(queues.waiting) == [a] and len(queues) == 1
    queues.check_integrity()


def test_an_illegal_move_is_refused_and_changes_nothing() -> None:
    queues = RequestQueues()
    a = Request("a", [1])
    queues.add(a)
    with pytest.raises(AssertionError, match="illegal transition"):
        queues.move(a, RequestStatus.SWAPPING_OUT)  # never from WAITING: it holds no KV
    assert a.status is RequestStatus.WAITING and list(queues.waiting) == [a]
    queues.check_integrity()
