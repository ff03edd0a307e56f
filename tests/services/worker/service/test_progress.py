"""ProgressBuffer: steps coalesced for the scheduler, urgent changes at once."""

from __future__ import annotations

import time

import grpc

from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_worker.service.progress import ProgressBuffer


def step(number: int, *counts: tuple[str, int], finish: str = "", changes=()) -> worker_pb2.StepEvent:
    return worker_pb2.StepEvent(
        step=number, state_changes=list(changes), num_batched_tokens=len(counts),
        num_compute_steps=1 if counts else 0,
        capacity=common_pb2.KVCapacity(num_free_gpu_blocks=100 - number),
        progress=[worker_pb2.RequestProgress(
            request_id=rid, num_new_tokens=n, num_prompt_tokens=5,
            finish_reason=common_pb2.FINISH_REASON_LENGTH if rid == finish else 0)
            for rid, n in counts])


def test_steps_merge_into_one_event_with_summed_counts_and_the_latest_figures():
    buffer = ProgressBuffer(interval_s=60.0)
    buffer.add(step(1, ("a", 1), ("b", 1)))
    buffer.add(step(2, ("a", 1), ("b", 1), finish="b"))
    buffer.add(step(3, ("a", 1)))
    assert not buffer.is_due(time.monotonic())  # a finish waits for the interval
    event = buffer.take()
    counts = {p.request_id: (p.num_new_tokens, p.finish_reason) for p in event.progress}
    assert counts == {"a": (3, 0), "b": (2, common_pb2.FINISH_REASON_LENGTH)}
    assert (event.step, event.num_batched_tokens, event.capacity.num_free_gpu_blocks) == (3, 5, 97)
    assert event.num_compute_steps == 3  # the trace's clock: every iteration counts
    assert buffer.take() is None


def test_failures_the_workers_own_preemptions_and_draining_are_due_at_once():
    failure = worker_pb2.RequestStateChange(request_id="a", error_code=grpc.StatusCode.INTERNAL.value[0])
    swapped = worker_pb2.RequestStateChange(request_id="a", state=common_pb2.REQUEST_STATE_SWAPPING_OUT,
                                            reason="kv_exhausted")
    running = worker_pb2.RequestStateChange(request_id="a", state=common_pb2.REQUEST_STATE_RUNNING)
    for urgent in (step(1, changes=[failure]), step(1, changes=[swapped]),
                   worker_pb2.StepEvent(is_draining=True)):
        buffer = ProgressBuffer(interval_s=60.0)
        buffer.add(urgent)
        assert buffer.is_due(time.monotonic())
    buffer = ProgressBuffer(interval_s=60.0)
    buffer.add(step(1, changes=[running]))
    assert not buffer.is_due(time.monotonic())
    assert buffer.is_due(time.monotonic() + 61.0)  # the interval passed
