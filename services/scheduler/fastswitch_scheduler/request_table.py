"""RequestTable: the scheduler's live requests, indexed the ways callers look them up.

One object owns the table so the servicer, the tick and the worker-event handling share it
without reaching into each other; lookups and admission counts are O(1), which matters with
thousands of open streams. Mutated on the scheduler's asyncio loop only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from fastswitch_scheduler.requests import ClusterRequest


class RequestTable:
    def __init__(self) -> None:
        self._by_id: dict[str, ClusterRequest] = {}
        self._by_client: dict[tuple[str, str], ClusterRequest] = {}  # (tenant, client id)
        self._num_by_tenant: Counter[str] = Counter()

    def add(self, request: ClusterRequest) -> None:
        """Mutates. The request's scheduler id and (tenant, client id) must be new."""
        client_key = (request.tenant.name, request.client_request_id)
        assert request.request_id not in self._by_id and client_key not in self._by_client
        self._by_id[request.request_id] = request
        self._by_client[client_key] = request
        self._num_by_tenant[request.tenant.name] += 1

    def remove(self, request: ClusterRequest) -> None:
        """Mutates; removing a request that is not in the table does nothing."""
        if self._by_id.pop(request.request_id, None) is None:
            return
        del self._by_client[(request.tenant.name, request.client_request_id)]
        self._num_by_tenant[request.tenant.name] -= 1
        if not self._num_by_tenant[request.tenant.name]:
            del self._num_by_tenant[request.tenant.name]

    def get(self, request_id: str) -> ClusterRequest | None:
        return self._by_id.get(request_id)

    def find(self, tenant_name: str, client_request_id: str) -> ClusterRequest | None:
        return self._by_client.get((tenant_name, client_request_id))

    def num_of(self, tenant_name: str) -> int:
        return self._num_by_tenant[tenant_name]

    def has_tenant(self, tenant_name: str) -> bool:
        return tenant_name in self._num_by_tenant

    def tenant_names(self) -> list[str]:
        """Tenants with at least one live request."""
        return list(self._num_by_tenant)

    def values(self) -> list[ClusterRequest]:
        """A snapshot: callers may add or remove while iterating it."""
        return list(self._by_id.values())

    def __iter__(self) -> Iterator[ClusterRequest]:
        return iter(self.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def check_integrity(self) -> None:
        assert len(self._by_client) == len(self._by_id) == sum(self._num_by_tenant.values())
        for request in self._by_id.values():
            assert self._by_client[(request.tenant.name, request.client_request_id)] is request
