"""Building blocks every gRPC service shares: health and reflection (ports, TLS and
credentials: transport.py)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

# grpc.health.v1 service name for liveness: SERVING while the process's work loop (the
# worker's engine thread) makes progress; Kubernetes liveness probes ask for it by name.
LIVENESS_SERVICE = "fastswitch.liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class ServiceHealth:
    """grpc.health.v1 status for the overall server ("") and one named service."""

    def __init__(self, server: grpc.aio.Server, service_name: str) -> None:
        self.service_name = service_name
        self._servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    async def set(self, is_serving: bool) -> None:
        status = SERVING if is_serving else NOT_SERVING
        await self._servicer.set("", status)
        await self._servicer.set(self.service_name, status)


def enable_reflection(server: grpc.aio.Server, *full_service_names: str) -> None:
    names = (*full_service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    reflection.enable_server_reflection((*names, reflection.SERVICE_NAME), server)
