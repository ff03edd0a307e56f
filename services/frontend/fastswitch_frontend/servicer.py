"""fastswitch.v1.Scheduler servicer (the client API) on the frontend: authenticates the caller,
validates and tokenizes, and streams the request's tokens; tenant calls go to the scheduler
with the authenticated tenant."""

from __future__ import annotations

import contextlib

import grpc

from fastswitch.tenants import AuthError, TenantState
from fastswitch.v1 import (
    control_pb2,
    control_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from fastswitch_frontend import generation
from fastswitch_frontend.core import FrontendCore
from fastswitch_frontend.validation import REQUEST_ID

CONTROL_TIMEOUT_S = 10.0


class FrontendServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, core: FrontendCore, control: control_pb2_grpc.ControlStub) -> None:
        self.core = core
        self.control = control  # unary calls to the scheduler

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
        try:
            owned = generation.submit(self.core, tenant, request)
            async with contextlib.aclosing(generation.responses(self.core, owned)) as stream:
                async for response in stream:
                    yield response
        except generation.GenerationError as exc:
            await context.abort(exc.code, exc.message)

    async def _forward(self, context, call, msg):
        """A unary call to the scheduler; its error status becomes the caller's."""
        try:
            return await call(msg, timeout=CONTROL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.UNAUTHENTICATED:  # the cluster token, not the caller's
                code = grpc.StatusCode.INTERNAL
            await context.abort(code, exc.details() or code.name)

    async def Cancel(self, request: scheduler_pb2.CancelRequest, context) -> scheduler_pb2.CancelResponse:
        tenant = await self._tenant(context)
        if not REQUEST_ID.fullmatch(request.request_id) or not request.request_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "request_id must be 1-128 letters, digits and _.:-")
        await self._forward(context, self.control.Cancel, control_pb2.ControlCancelRequest(
            caller=tenant.name, client_request_id=request.request_id))
        return scheduler_pb2.CancelResponse()

    async def SetTenantWeight(self, request, context) -> scheduler_pb2.SetTenantWeightResponse:
        caller = await self._admin(context)
        response = await self._forward(context, self.control.SetTenantWeight,
                                       control_pb2.ControlSetTenantWeightRequest(
                                           caller=caller.name, request=request))
        return scheduler_pb2.SetTenantWeightResponse(tenant=response.tenant)

    async def ListTenants(self, request, context) -> scheduler_pb2.ListTenantsResponse:
        caller = await self._tenant(context)
        response = await self._forward(context, self.control.ListTenants,
                                       control_pb2.ControlListTenantsRequest(caller=caller.name))
        return scheduler_pb2.ListTenantsResponse(tenants=response.tenants)

    async def GetClusterStats(self, request, context) -> scheduler_pb2.GetClusterStatsResponse:
        caller = await self._tenant(context)
        response = await self._forward(context, self.control.GetClusterStats,
                                       control_pb2.ControlGetClusterStatsRequest(caller=caller.name))
        return response.stats
