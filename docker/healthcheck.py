"""Container health check: exit 0 when the service on 127.0.0.1:PORT reports SERVING.

Asks grpc.health.v1 (every FastSwitch service serves it) with the grpcio the image already has,
so no grpc_health_probe binary is needed. Usage: fastswitch-healthcheck PORT [SERVICE]

Speaks TLS when FASTSWITCH_TLS_CA is set (the variable the services read too): it verifies the
server against that CA and, when FASTSWITCH_TLS_CERT and FASTSWITCH_TLS_KEY are set, presents
them as its client certificate (mTLS). The server's certificate names the Service callers use,
not 127.0.0.1: FASTSWITCH_TLS_SERVER_NAME says which name to verify it against. Kubernetes
exec probes run this because the kubelet's own gRPC probe cannot speak TLS.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TLS_CA_ENV = "FASTSWITCH_TLS_CA"
TLS_CERT_ENV = "FASTSWITCH_TLS_CERT"
TLS_KEY_ENV = "FASTSWITCH_TLS_KEY"
TLS_SERVER_NAME_ENV = "FASTSWITCH_TLS_SERVER_NAME"
TIMEOUT_S = 3


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def open_channel(address: str, env: Mapping[str, str]) -> grpc.Channel:
    """A plaintext channel, or a TLS one when the environment names a CA."""
    ca = env.get(TLS_CA_ENV, "")
    if not ca:
        return grpc.insecure_channel(address)
    cert, key = env.get(TLS_CERT_ENV, ""), env.get(TLS_KEY_ENV, "")
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca),
        private_key=_read(key) if cert and key else None,
        certificate_chain=_read(cert) if cert and key else None,
    )
    server_name = env.get(TLS_SERVER_NAME_ENV, "")
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(address, credentials, options=options)


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    if len(argv) not in (2, 3) or not argv[1].isdigit():
        print("usage: fastswitch-healthcheck PORT [SERVICE]", file=sys.stderr)
        return 2
    request = health_pb2.HealthCheckRequest(service=argv[2] if len(argv) == 3 else "")
    try:
        with open_channel(f"127.0.0.1:{argv[1]}", env) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(request, timeout=TIMEOUT_S)
    except OSError as exc:
        print(f"unhealthy: cannot read TLS files: {exc}", file=sys.stderr)
        return 1
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
