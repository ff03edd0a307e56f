"""fastswitch.v1.Control servicer: the frontends' sessions and the tenant calls they forward,
adapted to SchedulerCore. Callers are the cluster's own frontends (the cluster token); the
tenant a `caller` field names is the one the frontend authenticated."""

from __future__ import annotations

import asyncio
import logging

import grpc

from fastswitch.tenants import TenantState, UnknownTenantError, check_tenant_name
from fastswitch.v1 import control_pb2, control_pb2_grpc, scheduler_pb2
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase

log = logging.getLogger("fastswitch.scheduler")
MAX_ID_CHARS = 256


class ControlServicer(control_pb2_grpc.ControlServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def FrontendSession(self, request_iterator, context: grpc.aio.ServicerContext):
        first = await anext(request_iterator.__aiter__(), None)
        frontend_id = first.hello.frontend_id if first is not None and first.HasField("hello") else ""
        if not 0 < len(frontend_id) <= MAX_ID_CHARS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"a session starts with a hello naming the frontend (1-"
                                f"{MAX_ID_CHARS} characters)")
        session = self.core.open_frontend(frontend_id)
        reader = asyncio.create_task(self._read(request_iterator, session))
        reader.add_done_callback(_retrieve)
        try:
            # The reader puts None when the frontend hangs up, as the core does when a newer
            # session of the same frontend replaces this one.
            while (msg := await session.outbox.get()) is not None:
                yield msg
        finally:
            reader.cancel()
            self.core.close_frontend(session)

    async def _read(self, request_iterator, session) -> None:
        try:
            await self._apply(request_iterator, session)
        finally:
            session.close()  # the frontend hung up: the session's stream ends

    async def _apply(self, request_iterator, session) -> None:
        async for msg in request_iterator:
            try:
                kind = msg.WhichOneof("message")
                if kind == "submit":
                    self.core.submit(session, msg.submit)
                elif kind == "cancel":
                    request = self.core.requests.get(msg.cancel.request_id)
                    if request is not None and request.frontend_id == session.frontend_id:
                        self.core.cancel(request)
            except Exception:  # a malformed message must not end the session
                log.exception("bad frontend message")

    async def _caller(self, caller: str, context) -> TenantState:
        tenant = self.core.tenants.tenants.get(caller)
        if tenant is None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "the frontend's tenant is not in the scheduler's tenants file")
        return tenant

    async def Cancel(self, request: control_pb2.ControlCancelRequest, context):
        tenant = await self._caller(request.caller, context)
        target = self.core.find(tenant, request.client_request_id)
        if target is None:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no running request {request.client_request_id[:128]!r}")
        self.core.cancel(target, Failure(grpc.StatusCode.CANCELLED, "cancelled"))
        return control_pb2.ControlCancelResponse()

    async def SetTenantWeight(self, request: control_pb2.ControlSetTenantWeightRequest, context):
        caller = await self._caller(request.caller, context)
        if not caller.is_admin:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "admin calls need an admin tenant")
        try:
            tenant = self.core.tenants.set_weight(check_tenant_name(request.request.tenant),
                                                  request.request.weight)
        except UnknownTenantError:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no tenant {request.request.tenant!r} in the tenants file")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return control_pb2.ControlSetTenantWeightResponse(tenant=self._tenant_msg(tenant))

    async def ListTenants(self, request: control_pb2.ControlListTenantsRequest, context):
        """Admins see every tenant; a tenant sees only itself."""
        caller = await self._caller(request.caller, context)
        visible = self.core.tenants.tenants.values() if caller.is_admin else [caller]
        return control_pb2.ControlListTenantsResponse(tenants=[self._tenant_msg(t) for t in visible])

    def _tenant_msg(self, tenant: TenantState) -> scheduler_pb2.Tenant:
        mine = [r for r in self.core.requests.values() if r.tenant is tenant]
        return scheduler_pb2.Tenant(
            name=tenant.name, weight=tenant.weight, virtual_tokens=tenant.virtual_tokens,
            num_served_prompt_tokens=tenant.num_served_prompt_tokens,
            num_served_generated_tokens=tenant.num_served_generated_tokens,
            num_running_requests=sum(r.phase is Phase.RUNNING for r in mine),
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in mine))

    async def GetClusterStats(self, request: control_pb2.ControlGetClusterStatsRequest, context):
        """Admins see the workers and every request; a tenant sees only its own requests'
        counts (workers' figures are made of every tenant's requests)."""
        caller = await self._caller(request.caller, context)
        requests = self.core.requests.values()
        if not caller.is_admin:
            requests = [r for r in requests if r.tenant is caller]
        stats = scheduler_pb2.GetClusterStatsResponse(
            workers=self._worker_statuses(requests) if caller.is_admin else [],
            policy=self.core.config.policy,
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in requests),
            num_running_requests=sum(r.phase is Phase.RUNNING for r in requests))
        return control_pb2.ControlGetClusterStatsResponse(stats=stats)

    def _worker_statuses(self, requests: list[ClusterRequest]) -> list[scheduler_pb2.WorkerStatus]:
        workers = []
        for link in self.core.links.values():
            mine = [r for r in requests if r.worker_id == link.worker_id]
            status = scheduler_pb2.WorkerStatus(
                worker_id=link.worker_id, address=link.address, is_ready=link.is_ready,
                num_running_requests=sum(r.phase is Phase.RUNNING for r in mine),
                num_swapped_requests=sum(r.phase is Phase.PREEMPTED for r in mine))
            if link.capacity is not None:
                status.capacity.CopyFrom(link.capacity)
            if link.swap is not None:
                status.swap.CopyFrom(link.swap)
            workers.append(status)
        return workers


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
