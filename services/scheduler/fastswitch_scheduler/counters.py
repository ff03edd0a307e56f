"""When tenants' virtual token counters move: the one place the scheduler charges them.

Rules (the same whatever the policy; only vtc orders by them, the others still keep them so
ListTenants and a policy switch see true service):
- a request's prompt is charged when the scheduler first admits it (`charge_admission`), not
  when its first token comes back: one tick admitting several prompts sees each of them
  (the policy projects the charge while it decides, policy_vtc.py), and the counter never
  lags a prompt the GPU is already computing. What a conversation's turn reused from host KV
  is given back when the worker first reports it (`refund_reused_prompt`): cached tokens cost
  no compute;
- output tokens are charged as the workers report them (`charge_output`);
- a tenant becoming active again is lifted to the least-served active counter only after real
  idleness: no live request for longer than `idle_grace_s`. A closed-loop client's gap between
  one request ending and its next arriving (a round trip) is not idleness, so a light tenant is
  not pushed up to the others' level at every resubmission (which cost it up to 30% of its
  share);
- a tenant that starts to wait (backlogged: a request it cannot run yet) starts no more than
  the preemption threshold below the least-served tenant already waiting (`cap_credit`). A
  tenant whose requests all ran (it asked for less than its share) falls behind without being
  owed it: without the cap it would bank that lag as credit and, once it asks for more, take
  it back in a burst of preemptions. With it, a newly backlogged tenant is within the bound
  of policy_vtc.py from its first tick.

Mutated on the scheduler's asyncio loop only.
"""

from __future__ import annotations

import time

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch_scheduler.requests import ClusterRequest

DEFAULT_IDLE_GRACE_S = 1.5


class TenantCounters:
    def __init__(self, registry: TenantRegistry, *, idle_grace_s: float = DEFAULT_IDLE_GRACE_S) -> None:
        if idle_grace_s < 0:
            raise ValueError(f"idle_grace_s must be >= 0, got {idle_grace_s}")
        self.registry = registry
        self.idle_grace_s = idle_grace_s
        self._idle_since_s: dict[str, float] = {}  # tenant -> when its last live request left

    def prompt_cost(self, request: ClusterRequest) -> float:
        """Read-only: the virtual tokens admitting `request` charges its tenant now (0 when its
        prompt was charged already, e.g. a request moved to another worker)."""
        if request.is_prompt_charged:
            return 0.0
        return self.registry.input_weight * request.num_prompt_tokens / request.tenant.weight

    def charge_admission(self, request: ClusterRequest) -> None:
        """Mutates: charges the prompt once, when the request is first admitted anywhere."""
        if request.is_prompt_charged:
            return
        request.is_prompt_charged = True
        self.registry.charge(request.tenant, num_prompt_tokens=request.num_prompt_tokens,
                             num_generated_tokens=0)

    def refund_reused_prompt(self, request: ClusterRequest, num_reused_prompt_tokens: int) -> None:
        """Mutates: gives back, once, the prompt tokens the worker reused from host KV (a
        conversation's earlier turns): charged at admission, they cost no compute."""
        if request.is_reuse_refunded or not request.is_prompt_charged:
            return
        request.is_reuse_refunded = True
        num_refunded = min(num_reused_prompt_tokens, request.num_prompt_tokens)
        if num_refunded > 0:
            self.registry.charge(request.tenant, num_prompt_tokens=-num_refunded,
                                 num_generated_tokens=0)

    def charge_output(self, tenant: TenantState, num_generated_tokens: int) -> None:
        """Mutates: output tokens as reported (one call per tenant per worker event)."""
        if num_generated_tokens:
            self.registry.charge(tenant, num_prompt_tokens=0,
                                 num_generated_tokens=num_generated_tokens)

    def on_arrival(self, tenant: TenantState, active: list[TenantState], now_s: float | None = None) -> None:
        """Mutates: a request of a tenant with no live request arrived. Lifts its counter to
        the least-served active tenant's when it was idle longer than the grace (or never
        active); `active`: the tenants with live requests now."""
        now_s = time.monotonic() if now_s is None else now_s
        idle_since_s = self._idle_since_s.pop(tenant.name, None)
        if idle_since_s is not None and now_s - idle_since_s <= self.idle_grace_s:
            return  # a resubmission gap, not idleness: keep what it is owed
        self.registry.lift(tenant, active)

    def on_idle(self, tenant: TenantState, now_s: float | None = None) -> None:
        """Mutates: the tenant's last live request left the scheduler."""
        self._idle_since_s[tenant.name] = time.monotonic() if now_s is None else now_s

    def cap_credit(self, newly_backlogged: set[str], still_backlogged: set[str], cap: float) -> None:
        """Mutates: each tenant in `newly_backlogged` is lifted to at least the least-served
        counter of `still_backlogged` (those that waited already) minus `cap`."""
        if not newly_backlogged or not still_backlogged:
            return
        floor = min(self.registry.tenants[name].virtual_tokens for name in still_backlogged) - cap
        for name in newly_backlogged:
            tenant = self.registry.tenants[name]
            tenant.virtual_tokens = max(tenant.virtual_tokens, floor)
