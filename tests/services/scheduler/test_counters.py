"""When counters move (counters.py): prompts at admission, reuse given back, lift only after
real idleness."""

from __future__ import annotations

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch_scheduler.counters import TenantCounters
from fastswitch_scheduler.requests import ClusterRequest


def registry_of(*tenants: TenantState) -> TenantRegistry:
    return TenantRegistry(tenants={t.name: t for t in tenants}, input_weight=1.0, output_weight=2.0)


def request(tenant: TenantState, num_prompt_tokens: int = 40) -> ClusterRequest:
    return ClusterRequest(request_id="r", client_request_id="r", tenant=tenant, frontend_id="f",
                          num_prompt_tokens=num_prompt_tokens, max_tokens=8)


def test_the_prompt_is_charged_once_at_admission_and_the_reused_part_given_back() -> None:
    tenant = TenantState("a", weight=2.0)
    counters = TenantCounters(registry_of(tenant))
    r = request(tenant)
    assert counters.prompt_cost(r) == 20.0  # what the policy projects before admitting
    counters.charge_admission(r)
    counters.charge_admission(r)  # a resume or a move does not charge it again
    assert tenant.virtual_tokens == 20.0 and counters.prompt_cost(r) == 0.0
    counters.refund_reused_prompt(r, 30)
    counters.refund_reused_prompt(r, 30)
    assert tenant.virtual_tokens == 5.0 and tenant.num_served_prompt_tokens == 10
    counters.charge_output(tenant, 3)
    assert tenant.virtual_tokens == 8.0


def test_a_resubmission_gap_is_not_idleness_but_a_long_absence_is() -> None:
    busy = TenantState("busy", virtual_tokens=1000.0)
    light = TenantState("light", virtual_tokens=400.0)
    counters = TenantCounters(registry_of(busy, light), idle_grace_s=1.5)
    counters.on_idle(light, now_s=10.0)
    counters.on_arrival(light, [busy], now_s=10.2)  # the client's next request, 200 ms later
    assert light.virtual_tokens == 400.0  # keeps what it is owed
    counters.on_idle(light, now_s=20.0)
    counters.on_arrival(light, [busy], now_s=25.0)  # idle for 5 s: no banked credit
    assert light.virtual_tokens == 1000.0


def test_a_tenant_never_seen_starts_at_the_least_served_active_counter() -> None:
    a, b = TenantState("a", virtual_tokens=300.0), TenantState("b", virtual_tokens=200.0)
    newcomer = TenantState("c")
    counters = TenantCounters(registry_of(a, b, newcomer))
    counters.on_arrival(newcomer, [a, b], now_s=1.0)
    assert newcomer.virtual_tokens == 200.0


def test_a_tenant_that_starts_to_wait_banks_no_more_than_the_threshold() -> None:
    """A tenant whose requests all ran fell behind without being owed it: once it waits it
    starts at most the threshold below the least-served tenant already waiting."""
    a, b = TenantState("a", virtual_tokens=5000.0), TenantState("b", virtual_tokens=4000.0)
    light = TenantState("light", virtual_tokens=100.0)
    close = TenantState("close", virtual_tokens=3900.0)
    counters = TenantCounters(registry_of(a, b, light, close))
    counters.cap_credit({"light", "close"}, {"a", "b"}, cap=1024.0)
    assert light.virtual_tokens == 4000.0 - 1024.0
    assert close.virtual_tokens == 3900.0  # within the threshold: keeps its counter
    counters.cap_credit({"light"}, set(), cap=1024.0)  # nobody waited before: nothing to cap to
    assert light.virtual_tokens == 4000.0 - 1024.0
