"""Container HEALTHCHECK: exit 0 when the service on 127.0.0.1:PORT reports SERVING.

Asks grpc.health.v1 (every FastSwitch service serves it) with the grpcio the image already has,
so no grpc_health_probe binary is needed. Usage: fastswitch-healthcheck PORT [SERVICE]
"""

from __future__ import annotations

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print("usage: fastswitch-healthcheck PORT [SERVICE]", file=sys.stderr)
        return 2
    request = health_pb2.HealthCheckRequest(service=argv[2] if len(argv) == 3 else "")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{argv[1]}") as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=3)
    except grpc.RpcError as exc:
        print(f"unhealthy: {exc.code().name}", file=sys.stderr)
        return 1
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"unhealthy: {health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
