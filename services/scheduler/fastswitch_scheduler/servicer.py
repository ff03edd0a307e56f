"""fastswitch.v1.Scheduler servicer: adapts the protos to SchedulerCore."""

from __future__ import annotations

import uuid

import grpc

from fastswitch.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc
from fastswitch_scheduler.core import SchedulerCore
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.tenants import AuthError, TenantState
from fastswitch_scheduler.validation import InvalidRequest, prompt_token_ids


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    async def _tenant(self, context) -> TenantState:
        try:
            return self.core.tenants.identify(context.invocation_metadata())
        except AuthError as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))

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
        if len(core.requests) >= core.config.max_queued_requests:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many queued requests")
        cluster_request = ClusterRequest(
            request_id="", client_request_id=client_id, tenant=tenant, prompt_token_ids=token_ids,
            sampling=request.sampling, stop=request.stop, conversation_id=request.conversation_id,
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
        target = self.core.find(tenant, request.request_id)
        if target is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no running request {request.request_id!r}")
        self.core.cancel(target)
        return scheduler_pb2.CancelResponse()

    async def SetTenantWeight(self, request, context) -> scheduler_pb2.SetTenantWeightResponse:
        caller = await self._tenant(context)
        if not caller.is_admin:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "only admin tenants set weights")
        if not request.tenant:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant is required")
        try:
            tenant = self.core.tenants.set_weight(request.tenant, request.weight)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return scheduler_pb2.SetTenantWeightResponse(tenant=self._tenant_msg(tenant))

    async def ListTenants(self, request, context) -> scheduler_pb2.ListTenantsResponse:
        await self._tenant(context)
        return scheduler_pb2.ListTenantsResponse(
            tenants=[self._tenant_msg(t) for t in self.core.tenants.tenants.values()])

    def _tenant_msg(self, tenant: TenantState) -> scheduler_pb2.Tenant:
        mine = [r for r in self.core.requests.values() if r.tenant is tenant]
        return scheduler_pb2.Tenant(
            name=tenant.name, weight=tenant.weight, virtual_tokens=tenant.virtual_tokens,
            num_served_prompt_tokens=tenant.num_served_prompt_tokens,
            num_served_generated_tokens=tenant.num_served_generated_tokens,
            num_running_requests=sum(r.phase is Phase.RUNNING for r in mine),
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in mine))

    async def GetClusterStats(self, request, context) -> scheduler_pb2.GetClusterStatsResponse:
        await self._tenant(context)
        requests = list(self.core.requests.values())
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
        return scheduler_pb2.GetClusterStatsResponse(
            workers=workers, policy=self.core.config.policy,
            num_queued_requests=sum(r.phase is not Phase.RUNNING for r in requests),
            num_running_requests=sum(r.phase is Phase.RUNNING for r in requests))
