"""fastswitch.v1.Scheduler servicer: adapts the protos to SchedulerCore."""

from __future__ import annotations

import uuid

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.tenants import (
    AuthError,
    TenantState,
    UnknownTenantError,
    check_tenant_name,
)
from fastswitch_scheduler.validation import REQUEST_ID, InvalidRequest, prompt_token_ids


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def _tenant(self, context) -> TenantState:
        try:
            return self.core.tenants.identify(context.invocation_metadata())
        except AuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

    async def _admin(self, context) -> TenantState:
        caller = await self._tenant(context)
        if not caller.is_admin:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED,
                                "admin calls need an admin tenant (tenants file 'admins', or "
                                "--allow-anonymous-admin without a tenants file)")
        return caller

    async def Generate(self, request: scheduler_pb2.GenerateRequest, context):
        tenant = await self._tenant(context)
        core = self.core
        if core.tokenizer is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "no worker is ready yet")
        try:
            token_ids = prompt_token_ids(request, core.tokenizer, vocab_size=core.vocab_size,
                                         max_model_len=core.max_model_len)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        client_id = request.request_id or uuid.uuid4().hex
        if core.find(tenant, client_id) is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, f"request {client_id!r} is running")
        if (refusal := core.admission_refusal(tenant)) is not None:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        stop = common_pb2.StopConditions()
        stop.CopyFrom(request.stop)
        if not stop.max_tokens:  # unset: up to the context, as vLLM does
            stop.max_tokens = core.max_model_len - len(token_ids)
        cluster_request = ClusterRequest(
            request_id="", client_request_id=client_id, tenant=tenant, prompt_token_ids=token_ids,
            sampling=request.sampling, stop=stop, conversation_id=request.conversation_id,
            priority=request.priority if request.HasField("priority") else 0)
        await core.submit(cluster_request)
        try:
            while True:
                item = await cluster_request.responses.get()
                if isinstance(item, Failure):
                    await context.abort(item.code, item.message)
                yield item
                if item.finish_reason != common_pb2.FINISH_REASON_UNSPECIFIED:
                    return
        finally:
            if cluster_request.phase is not Phase.FINISHED:  # client gone or deadline passed
                core.cancel(cluster_request)

    async def Cancel(self, request: scheduler_pb2.CancelRequest, context) -> scheduler_pb2.CancelResponse:
        tenant = await self._tenant(context)
        if not REQUEST_ID.fullmatch(request.request_id) or not request.request_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "request_id must be 1-128 letters, digits and _.:-")
        target = self.core.find(tenant, request.request_id)
        if target is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no running request {request.request_id!r}")
        self.core.cancel(target)
        return scheduler_pb2.CancelResponse()

    async def SetTenantWeight(self, request, context) -> scheduler_pb2.SetTenantWeightResponse:
        await self._admin(context)
        try:
            tenant = self.core.tenants.set_weight(check_tenant_name(request.tenant), request.weight)
        except UnknownTenantError:
            await context.abort(grpc.StatusCode.NOT_FOUND,
                                f"no tenant {request.tenant!r} in the tenants file")
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return scheduler_pb2.SetTenantWeightResponse(tenant=self._tenant_msg(tenant))

    async def ListTenants(self, request, context) -> scheduler_pb2.ListTenantsResponse:
        """Admins see every tenant; a tenant sees only itself."""
        caller = await self._tenant(context)
        visible = self.core.tenants.tenants.values() if caller.is_admin else [caller]
        return scheduler_pb2.ListTenantsResponse(tenants=[self._tenant_msg(t) for t in visible])

    def _tenant_msg(self, tenant: TenantState) -> scheduler_pb2.Tenant:
        mine = [r for r in self.core.requests.values() if r.tenant is tenant]
        return scheduler_pb2.Tenant(
            name=tenant.name, weight=tenant.weight, virtual_tokens=tenant.virtual_tokens,
            num_served_prompt_tokens=tenant.num_served_prompt_tokens,
            num_served_generated_tokens=tenant.num_served_generated_tokens,
            num_running_requests=sum(r.phase is Phase.RUNNING for r in mine),
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in mine))

    async def GetClusterStats(self, request, context) -> scheduler_pb2.GetClusterStatsResponse:
        """Admins see the workers and every request; a tenant sees only its own requests'
        counts (workers' figures are made of every tenant's requests)."""
        caller = await self._tenant(context)
        requests = self.core.requests.values()
        if not caller.is_admin:
            requests = [r for r in requests if r.tenant is caller]
        return scheduler_pb2.GetClusterStatsResponse(
            workers=self._worker_statuses(requests) if caller.is_admin else [],
            policy=self.core.config.policy,
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in requests),
            num_running_requests=sum(r.phase is Phase.RUNNING for r in requests))

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
