"""BatchScheduler on tiny pools (block_size 4, 8 GPU blocks), pure Python: who is batched,
which swaps are planned, and when blocks are reused. Copies finish only when a test says
(PureWorker.finish_copies), so every in-between state can be asserted."""

from __future__ import annotations

import pytest

from fastswitch_worker.engine.kv_manager import SwapDirection, SwapPlan
from fastswitch_worker.engine.scheduler_output import SchedulerOutput
from fastswitch_worker.engine.sequence import RequestStatus

WAITING, RUNNING = RequestStatus.WAITING, RequestStatus.RUNNING
SWAPPING_OUT, SWAPPED = RequestStatus.SWAPPING_OUT, RequestStatus.SWAPPED
SWAPPING_IN = RequestStatus.SWAPPING_IN


def swapped_out(w, request_id: str, prompt: int = 20):
    """A request that ran one step (prompt computed, one token out) and is now SWAPPED."""
    w.add(request_id, prompt)
    w.step()
    w.scheduler.request_preempt(w.requests[request_id])
    w.step()
    w.finish_copies()
    assert w.status(request_id) is SWAPPED
    return w


def test_a_prompt_that_fits_is_prefilled_in_one_step(make_worker) -> None:
    w = make_worker()
    w.add("a", 10)
    output = w.step()
    assert w.batch(output) == {"a": 10} and output.swaps == ()
    assert w.status("a") is RUNNING and w.requests["a"].gpu_table.num_blocks == 3


def test_a_long_prompt_is_prefilled_in_chunks_of_the_token_budget(make_worker) -> None:
    w = make_worker(max_num_batched_tokens=6)
    w.add("a", 10)
    assert [w.batch(w.step()) for _ in range(3)] == [{"a": 6}, {"a": 4}, {"a": 1}]
    assert w.requests["a"].output_token_ids == [7, 7]  # sampled after the prompt and a decode


def test_max_num_seqs_caps_the_batch_and_the_rest_wait_in_order(make_worker) -> None:
    w = make_worker(max_num_seqs=2)
    for request_id in "abc":
        w.add(request_id, 4)
    assert w.batch(w.step()) == {"a": 4, "b": 4}
    assert w.batch(w.step()) == {"a": 1, "b": 1}
    assert [r.request_id for r in w.queues.waiting] == ["c"]


def test_admission_never_preempts_a_running_request(make_worker) -> None:
    w = make_worker()
    w.add("a", 24)  # 6 of the 8 blocks
    w.step()
    w.add("b", 12)  # needs 3 blocks: only 1 is left once a decodes
    output = w.step()
    assert w.batch(output) == {"a": 1} and output.kv_exhausted_ids == ()
    assert w.status("b") is WAITING


def test_a_preempted_request_waits_for_its_swap_out_before_its_blocks_are_reused(
        make_worker) -> None:
    w = make_worker()
    w.add("a", 20)  # 5 blocks
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    w.add("b", 16)  # needs 4 blocks: only a's would do
    output = w.step()
    assert [p.request_id for p in output.swap_outs] == ["a"] and not output.blocking_ids
    assert w.status("a") is SWAPPING_OUT and w.requests["a"].gpu_table.num_blocks == 5
    assert w.status("b") is WAITING and w.batch(output) == {}
    assert w.batch(w.step()) == {}  # the copy still reads a's blocks
    w.finish_copies()
    assert w.status("a") is SWAPPED and w.requests["a"].gpu_table is None
    assert w.requests["a"].num_host_valid_tokens == 20
    assert w.batch(w.step()) == {"b": 16}


def test_in_sync_mode_a_swap_out_completes_before_the_forward_pass_and_its_blocks_are_reused(
        make_worker) -> None:
    w = make_worker(is_sync_swaps=True)
    w.add("a", 20)
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    w.add("b", 16)
    output = w.step()
    assert output.blocking_ids == {"a"} and w.copies.ran_now == list(output.swap_outs)
    assert w.status("a") is SWAPPED and not w.copies.in_flight
    assert w.batch(output) == {"b": 16}  # in the blocks a's copy has just read


def test_a_resume_during_a_swap_out_cancels_it_and_the_request_keeps_its_gpu_kv(
        make_worker) -> None:
    w = make_worker()
    w.add("a", 20)
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    w.step()
    w.scheduler.request_resume(w.requests["a"])
    output = w.step()
    assert output.cancelled_swap_out_ids == {"a"} and output.swaps == ()
    assert w.status("a") is RUNNING and w.batch(output) == {"a": 1}
    w.finish_copies()
    a = w.requests["a"]
    assert a.status is RUNNING and a.gpu_table.num_blocks == 6  # nothing was freed
    assert a.num_host_valid_tokens == 20  # the finished copy stays valid for reuse
    assert w.counters.num_cancelled_swap_outs == 1 and w.counters.num_swap_ins == 0


def test_a_swapped_in_request_is_not_batched_until_its_copy_finishes(make_worker) -> None:
    w = swapped_out(make_worker(blocking_swap_in_max_blocks=0), "a")
    w.scheduler.request_resume(w.requests["a"])
    output = w.step()
    assert [p.request_id for p in output.swap_ins] == ["a"] and not output.blocking_ids
    assert w.status("a") is SWAPPING_IN and w.batch(output) == {}
    assert w.batch(w.step()) == {}
    w.finish_copies()
    assert w.status("a") is RUNNING and w.requests["a"].num_computed_tokens == 20
    assert w.batch(w.step()) == {"a": 1}


def test_a_small_swap_in_into_a_small_batch_is_waited_for_and_joins_this_batch(
        make_worker) -> None:
    w = swapped_out(make_worker(), "a")  # 5 blocks: small (<= 8), and the batch is empty
    w.scheduler.request_resume(w.requests["a"])
    output = w.step()
    assert output.blocking_ids == {"a"} and w.copies.ran_now == list(output.swap_ins)
    assert w.status("a") is RUNNING and w.batch(output) == {"a": 1}


def test_a_resume_waits_while_the_gpu_has_no_room(make_worker) -> None:
    w = swapped_out(make_worker(), "a")
    w.add("b", 28)  # 7 of the 8 blocks
    w.step()
    w.scheduler.request_resume(w.requests["a"])
    assert w.step().swaps == () and w.status("a") is SWAPPED  # retried every step
    w.scheduler.remove(w.requests["b"], RequestStatus.FINISHED)
    w.switches.release_if_done(w.requests["b"])
    assert w.batch(w.step()) == {"a": 1}


def test_a_preempt_during_a_swap_in_waits_for_the_copy(make_worker) -> None:
    w = swapped_out(make_worker(blocking_swap_in_max_blocks=0), "a")
    w.scheduler.request_resume(w.requests["a"])
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    assert w.step().swaps == () and w.status("a") is SWAPPING_IN
    w.finish_copies()
    output = w.step()
    # Nothing new was computed since the first swap-out: the host copy is whole, no copy.
    assert [p.num_blocks for p in output.swap_outs] == [0] and w.status("a") is SWAPPED


def test_a_waiting_request_is_preempted_without_a_copy_and_resumed_at_the_front(
        make_worker) -> None:
    w = make_worker(max_num_seqs=1)
    for request_id in "abc":
        w.add(request_id, 4)
    w.step()
    w.scheduler.request_preempt(w.requests["b"])
    assert w.step().swaps == () and w.status("b") is SWAPPED
    w.scheduler.request_resume(w.requests["b"])
    w.step()
    assert [r.request_id for r in w.queues.waiting] == ["b", "c"]


def test_when_host_memory_is_full_a_preempted_request_is_dropped_and_recomputed(
        make_worker) -> None:
    w = make_worker(num_host_blocks=2)
    w.add("a", 20)  # 5 blocks: more than the host holds
    w.step()
    w.scheduler.request_preempt(w.requests["a"])
    output = w.step()
    assert output.recomputed_ids == ("a",) and output.swaps == ()
    assert w.status("a") is SWAPPED and w.kv.gpu.num_free_blocks == 8
    w.scheduler.request_resume(w.requests["a"])
    assert w.batch(w.step()) == {"a": 21}  # prompt and its token, from scratch


def two_full_requests(w, **fields_of: dict):
    """a and b, 16-token prompts, fill all 8 blocks; their next decode needs one more."""
    for request_id in "ab":
        w.add(request_id, 16, **fields_of.get(request_id, {}))
    w.step()
    return w


@pytest.mark.parametrize("ranks, victim, batch", [
    ({"a": 2, "b": 1}, "b", {"a": 1}),
    ({"a": 1, "b": 2}, "a", {"b": 1}),  # a makes room for b by leaving itself
])
def test_when_gpu_kv_runs_out_the_lowest_ranked_request_is_swapped_out_at_once(
        make_worker, ranks, victim, batch) -> None:
    w = two_full_requests(make_worker())
    w.scheduler.update_ranks(ranks)
    output = w.step()
    assert output.kv_exhausted_ids == (victim,) and output.blocking_ids == {victim}
    assert w.copies.ran_now == list(output.swap_outs)  # urgent: copied before the forward
    assert w.status(victim) is SWAPPED and w.batch(output) == batch


def test_without_ranks_the_client_priority_chooses_the_victim(make_worker) -> None:
    w = two_full_requests(make_worker(), a=dict(client_priority=5),
                          b=dict(client_priority=1))
    assert w.step().kv_exhausted_ids == ("b",)


def test_a_rank_outweighs_the_client_priority(make_worker) -> None:
    w = two_full_requests(make_worker(), a=dict(client_priority=5),
                          b=dict(client_priority=1))
    w.scheduler.update_ranks({"a": 1, "b": 2})
    assert w.step().kv_exhausted_ids == ("a",)


def test_among_equal_ranks_the_latest_arrival_is_preempted(make_worker) -> None:
    w = two_full_requests(make_worker(), a=dict(arrival_time_s=2.0),
                          b=dict(arrival_time_s=1.0))
    assert w.step().kv_exhausted_ids == ("a",)


def test_a_finished_request_leaves_every_queue_and_table(make_worker) -> None:
    w = make_worker()
    w.add("a", 4)
    w.step()
    w.scheduler.update_ranks({"a": 3})
    w.scheduler.request_preempt(w.requests["a"])
    w.scheduler.remove(w.requests["a"], RequestStatus.ABORTED)
    assert len(w.queues) == 0 and w.scheduler.ranks == {} and not w.scheduler.has_work()


def test_a_request_is_never_swapped_in_and_out_in_one_step() -> None:
    out = SwapPlan("a", SwapDirection.OUT, (), 4)
    into = SwapPlan("a", SwapDirection.IN, (), 4)
    with pytest.raises(AssertionError, match="swapped in and out"):
        SchedulerOutput((), (out, into), frozenset(), frozenset(), ())
