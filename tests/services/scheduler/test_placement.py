"""Late placement (placement.py): affinity only where the holder has room, the least loaded
worker first, a bounded slice of the pool per tenant."""

from __future__ import annotations

from fastswitch.tenants import TenantState
from fastswitch_scheduler.placement import WorkerRoom, offers, room_of
from fastswitch_scheduler.requests import ClusterRequest, Phase


def make(name: str, tenant: TenantState, *, holder: str | None = None, arrival_s: float = 0.0,
         phase: Phase = Phase.QUEUED, num_prompt_tokens: int = 20) -> ClusterRequest:
    r = ClusterRequest(request_id=name, client_request_id=name, tenant=tenant, frontend_id="f",
                       num_prompt_tokens=num_prompt_tokens, max_tokens=10, arrival_s=arrival_s)
    r.kv_holder_id, r.phase = holder, phase
    return r


def key(r: ClusterRequest) -> tuple:
    return (r.arrival_s,)


def test_a_turn_goes_to_its_holder_only_while_the_holder_has_room() -> None:
    t = TenantState("t")
    rooms = {"w0": WorkerRoom("w0", 100, 1, 30), "w1": WorkerRoom("w1", 100, 0, 0)}
    turn = make("turn", t, holder="w0")
    order, offered = offers([turn], rooms, max_running=2, headroom_tokens=4, key=key)
    assert order == ["w1", "w0"]  # the least loaded chooses first...
    assert offered["w0"] == [turn] and offered["w1"] == []  # ...but the turn is w0's
    full = {"w0": WorkerRoom("w0", 100, 2, 60), "w1": WorkerRoom("w1", 100, 0, 0)}
    _, offered = offers([make("turn", t, holder="w0")], full, max_running=2, headroom_tokens=4, key=key)
    assert [r.request_id for r in offered["w1"]] == ["turn"]  # recomputed there


def test_each_worker_sees_the_pool_in_policy_order_a_bounded_slice_per_tenant() -> None:
    heavy, light = TenantState("heavy"), TenantState("light")
    pool = [make(f"h{i}", heavy, arrival_s=i) for i in range(10)] + [make("l0", light, arrival_s=20)]
    rooms = {"w0": WorkerRoom("w0", 1000, 0, 0)}
    _, offered = offers(pool, rooms, max_running=3, headroom_tokens=4, key=key)
    assert [r.request_id for r in offered["w0"]] == ["h0", "h1", "h2", "l0"]


def test_room_counts_only_running_requests() -> None:
    t = TenantState("t")
    placed = [make("run", t, phase=Phase.RUNNING), make("parked", t, phase=Phase.PREEMPTED)]
    room = room_of("w0", 100, placed, headroom_tokens=4)
    assert (room.num_running, room.used_tokens) == (1, 24)
    assert room.fits(76, max_running=2) and not room.fits(77, max_running=2)
    assert not room.fits(1, max_running=1)
