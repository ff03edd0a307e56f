"""RequestTable: lookups by id and by (tenant, client id), per-tenant counts."""

from __future__ import annotations

from fastswitch.tenants import TenantState
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest


def make(request_id: str, tenant: TenantState, client_id: str) -> ClusterRequest:
    return ClusterRequest(request_id=request_id, client_request_id=client_id, tenant=tenant,
                          frontend_id="f0", num_prompt_tokens=1, max_tokens=1)


def test_add_find_count_and_remove():
    alice, bob = TenantState("alice"), TenantState("bob")
    table = RequestTable()
    first, second, third = make("1", alice, "c1"), make("2", alice, "c2"), make("3", bob, "c1")
    for request in (first, second, third):
        table.add(request)
        table.check_integrity()
    assert len(table) == 3 and table.get("2") is second
    assert table.find("alice", "c1") is first and table.find("bob", "c1") is third
    assert table.find("bob", "c2") is None
    assert (table.num_of("alice"), table.num_of("bob"), table.num_of("carol")) == (2, 1, 0)
    table.remove(third)
    table.remove(third)  # twice is harmless
    table.check_integrity()
    assert not table.has_tenant("bob") and table.tenant_names() == ["alice"]
    for request in table:  # iterating a snapshot while removing
        table.remove(request)
    table.check_integrity()
    assert len(table) == 0 and table.find("alice", "c1") is None
