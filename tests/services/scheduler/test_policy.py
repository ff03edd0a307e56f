"""The cluster policy as pure functions: ordering, packing into capacity, command diff."""

from __future__ import annotations

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch_scheduler.policy import PolicyParams, order_key, plan_worker, select_running
from fastswitch_scheduler.requests import ClusterRequest, Phase


def request(name: str, tenant: TenantState, *, num_prompt_tokens: int = 10, arrival_s: float = 0.0,
             phase: Phase = Phase.QUEUED, priority: int = 0) -> ClusterRequest:
    r = ClusterRequest(request_id=name, client_request_id=name, tenant=tenant, frontend_id="f0",
                       num_prompt_tokens=num_prompt_tokens, max_tokens=10, priority=priority,
                       arrival_s=arrival_s)
    r.phase, r.is_admitted = phase, phase is not Phase.QUEUED
    return r


def test_vtc_runs_the_least_served_tenant_first() -> None:
    rich, poor = TenantState("rich", virtual_tokens=500.0), TenantState("poor", virtual_tokens=10.0)
    params = PolicyParams("vtc", vtc_preempt_threshold=0.0, max_running=1)
    candidates = [request("a", rich, arrival_s=0), request("b", poor, arrival_s=1)]
    chosen = select_running(candidates, key=order_key(params, {}), capacity_tokens=10_000, params=params)
    assert [r.request_id for r in chosen] == ["b"]


def test_vtc_hysteresis_keeps_a_running_request_within_the_threshold() -> None:
    running_tenant = TenantState("r", virtual_tokens=100.0)
    waiting_tenant = TenantState("w", virtual_tokens=60.0)
    running = request("run", running_tenant, phase=Phase.RUNNING)
    waiting = request("wait", waiting_tenant, arrival_s=1)
    for threshold, expected in ((64.0, "run"), (16.0, "wait")):
        params = PolicyParams("vtc", vtc_preempt_threshold=threshold, max_running=1)
        chosen = select_running([running, waiting], key=order_key(params, {}),
                                capacity_tokens=10_000, params=params)
        assert [r.request_id for r in chosen] == [expected]


def test_packing_skips_what_does_not_fit_and_takes_smaller_requests_after_it() -> None:
    tenant = TenantState("t")
    params = PolicyParams("fcfs", kv_headroom_tokens=0)
    candidates = [request("small1", tenant, num_prompt_tokens=30, arrival_s=0),
                  request("huge", tenant, num_prompt_tokens=500, arrival_s=1),
                  request("small2", tenant, num_prompt_tokens=30, arrival_s=2)]
    chosen = select_running(candidates, key=order_key(params, {}), capacity_tokens=100, params=params)
    assert [r.request_id for r in chosen] == ["small1", "small2"]


def test_priority_and_trace_run_the_highest_level_first() -> None:
    tenant = TenantState("t")
    low, high = request("low", tenant, priority=1), request("high", tenant, priority=3, arrival_s=5)
    for params, trace in ((PolicyParams("priority", max_running=1), {}),
                          (PolicyParams("trace", max_running=1), {"low": 0, "high": 2})):
        chosen = select_running([low, high], key=order_key(params, trace), capacity_tokens=1000,
                                params=params)
        assert [r.request_id for r in chosen] == ["high"]


def test_the_plan_admits_new_resumes_preempted_and_preempts_the_unchosen() -> None:
    tenant = TenantState("t")
    new = request("new", tenant)
    parked = request("parked", tenant, phase=Phase.PREEMPTED)
    running = request("running", tenant, phase=Phase.RUNNING)
    plan = plan_worker([new, parked, running], chosen=[new, parked])
    assert plan.to_admit == (new,) and plan.to_resume == (parked,) and plan.to_preempt == (running,)


def test_a_newly_active_tenant_starts_at_the_least_served_active_counter() -> None:
    registry = TenantRegistry()
    busy, other, newcomer = TenantState("a", virtual_tokens=300.0), TenantState("b", virtual_tokens=200.0), TenantState("c")
    registry.lift(newcomer, [busy, other])
    assert newcomer.virtual_tokens == 200.0
    registry.charge(newcomer, num_prompt_tokens=10, num_generated_tokens=5)
    assert newcomer.virtual_tokens == 200.0 + (1.0 * 10 + 2.0 * 5) / newcomer.weight
