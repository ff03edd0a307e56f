"""Where a request's time went: the frontend's phase accounting from the worker's state
changes (pure, driven with explicit times), and through the real local stack a preempted
request whose final response shows its swapped time."""

from __future__ import annotations

import asyncio

import pytest

from fastswitch.v1 import common_pb2, scheduler_pb2
from fastswitch_frontend.timeline import TIMED_PHASES, Phase, Timeline

S = common_pb2  # the worker's states, fastswitch.v1.RequestState


def test_phases_follow_the_state_changes_and_sum_to_the_time_since_arrival() -> None:
    timeline = Timeline(arrival_s=10.0)
    timeline.placed(10.02)
    timeline.state(S.REQUEST_STATE_WAITING, 10.05)
    timeline.state(S.REQUEST_STATE_RUNNING, 10.25)
    timeline.state(S.REQUEST_STATE_SWAPPING_OUT, 11.0)
    timeline.state(S.REQUEST_STATE_SWAPPED, 11.1)
    timeline.state(S.REQUEST_STATE_SWAPPING_IN, 12.1)
    timeline.state(S.REQUEST_STATE_RUNNING, 12.15)
    timeline.state(S.REQUEST_STATE_FINISHED, 13.0)
    totals = timeline.totals_ms(99.0)  # done: later time no longer counts
    assert totals == pytest.approx({
        Phase.PLACEMENT_WAIT: 20.0, Phase.ADMISSION_WAIT: 30.0, Phase.ENGINE_QUEUE: 200.0,
        Phase.RUNNING: 750.0 + 850.0, Phase.SWAPPING_OUT: 100.0, Phase.SWAPPED_OUT: 1000.0,
        Phase.SWAPPING_IN: 50.0})
    assert sum(totals.values()) == pytest.approx(3000.0)


def test_the_open_phase_counts_until_now_without_being_closed() -> None:
    timeline = Timeline(arrival_s=0.0)
    timeline.placed(0.01)
    assert timeline.totals_ms(0.5)[Phase.ADMISSION_WAIT] == pytest.approx(490.0)
    assert timeline.totals_ms(1.0)[Phase.ADMISSION_WAIT] == pytest.approx(990.0)
    assert timeline.durations_ms[Phase.ADMISSION_WAIT] == 0.0  # totals_ms is pure


def test_a_state_seen_first_as_running_skips_the_queue() -> None:
    # One engine step admits and batches a request: the frontend sees RUNNING only.
    timeline = Timeline(arrival_s=0.0)
    timeline.placed(0.1)
    timeline.state(S.REQUEST_STATE_RUNNING, 0.3)
    totals = timeline.totals_ms(0.4)
    assert totals[Phase.ENGINE_QUEUE] == 0.0
    assert totals[Phase.ADMISSION_WAIT] == pytest.approx(200.0)
    assert totals[Phase.RUNNING] == pytest.approx(100.0)


def test_a_later_placement_and_repeated_or_unknown_states_change_nothing() -> None:
    timeline = Timeline(arrival_s=0.0)
    timeline.placed(0.1)
    timeline.state(S.REQUEST_STATE_RUNNING, 0.2)
    timeline.placed(0.3)  # a move: the request is running, not waiting for a placement
    timeline.state(S.REQUEST_STATE_RUNNING, 0.4)
    timeline.state(S.REQUEST_STATE_UNSPECIFIED, 0.5)
    assert timeline.phase is Phase.RUNNING and timeline.since_s == 0.2
    timeline.state(S.REQUEST_STATE_ABORTED, 0.6)
    timeline.state(S.REQUEST_STATE_RUNNING, 0.9)  # after the end: ignored
    assert timeline.phase is Phase.DONE
    assert timeline.totals_ms(5.0)[Phase.RUNNING] == pytest.approx(400.0)


def test_a_recompute_preemption_counts_as_engine_queue_time() -> None:
    timeline = Timeline(arrival_s=0.0)
    timeline.placed(0.0)
    timeline.state(S.REQUEST_STATE_RUNNING, 0.1)
    timeline.state(S.REQUEST_STATE_WAITING, 0.2)  # preempted by recompute: back in the queue
    timeline.state(S.REQUEST_STATE_RUNNING, 0.7)
    totals = timeline.totals_ms(0.8)
    assert totals[Phase.ENGINE_QUEUE] == pytest.approx(500.0)
    assert totals[Phase.SWAPPED_OUT] == 0.0


def test_every_timed_phase_has_a_request_timing_field() -> None:
    fields = set(common_pb2.RequestTiming.DESCRIPTOR.fields_by_name)
    assert {f"{phase.value}_ms" for phase in TIMED_PHASES} <= fields


def _request(prompt: list[int], max_tokens: int, priority: int) -> scheduler_pb2.GenerateRequest:
    return scheduler_pb2.GenerateRequest(
        token_ids=scheduler_pb2.TokenIds(ids=prompt), priority=priority,
        stop=common_pb2.StopConditions(max_tokens=max_tokens, ignore_eos=True))


async def _final(stub, request, first_token: asyncio.Event | None = None):
    final = None
    async for response in stub.Generate(request, metadata=(("authorization", "Bearer tok-a"),)):
        if first_token is not None and response.token_ids:
            first_token.set()
        final = response
    return final


async def test_a_preempted_request_reports_its_swapped_time(stack_factory) -> None:
    # One slot under the priority policy: a later, higher-priority request preempts the
    # running one, which is swapped out (FastSwitch mode) and resumed when the slot frees.
    async with stack_factory(policy="priority", max_running_per_worker=1) as stack:
        started = asyncio.Event()
        low = asyncio.create_task(
            _final(stack.stub, _request(list(range(1, 30)), 400, 0), started))
        await asyncio.wait_for(started.wait(), 30)
        high = await _final(stack.stub, _request(list(range(40, 60)), 20, 5))
        low_final = await asyncio.wait_for(low, 60)
    timing = low_final.timing
    assert timing.num_preemptions >= 1
    assert timing.swapped_out_ms > 0
    assert timing.running_ms > 0
    phases_ms = [getattr(timing, f"{phase.value}_ms") for phase in TIMED_PHASES]
    assert sum(phases_ms) == pytest.approx(timing.e2e_ms, rel=0.01)
    # The preempting request ran without a switch of its own.
    assert high.timing.num_preemptions == 0
    assert high.timing.swapped_out_ms == 0.0 and high.timing.running_ms > 0
