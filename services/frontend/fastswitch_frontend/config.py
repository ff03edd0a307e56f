"""FrontendConfig: the frontend service's settings, each declared once (flag, environment
variable, default, help: fastswitch.settings); filled from CLI/env in main only."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from fastswitch import logs, transport
from fastswitch.metrics_http import check_metrics_port, metrics_port_setting
from fastswitch.settings import setting

DEFAULT_PORT = 50051
DEFAULT_HTTP_PORT = 8000
# Prometheus /metrics: 9400 frontend, 9401 scheduler, 9402 worker, 9403 kvstore (docs/metrics.md).
DEFAULT_METRICS_PORT = 9400


@dataclass(frozen=True)
class FrontendConfig:
    listen: str = setting(f"0.0.0.0:{DEFAULT_PORT}", env="FASTSWITCH_FRONTEND_LISTEN",
                          metavar="HOST:PORT", help="gRPC address clients call")
    scheduler_addr: str = setting("127.0.0.1:50052", metavar="HOST:PORT", help=(
        "the scheduler's control address (placements and fairness; tokens never pass there)"))
    frontend_name: str = setting(default_factory=socket.gethostname, default_text="the host name",
                                 help="this frontend's name (Kubernetes: the pod's name)")
    model: str = setting("tiny", help=(
        "checkpoint directory (its tokenizer.json) or preset name: the tokenizer of the prompts"))
    tenants_file: str = setting("", metavar="FILE", help=(
        'JSON {"tokens": {token: tenant}, "weights": {tenant: weight}, "admins": [tenant]}, the '
        "scheduler's file; without it every caller is the anonymous tenant"))
    allow_anonymous_admin: bool = setting(False, help=(
        "without a tenants file, let every caller make admin calls"))
    http_port: int = setting(DEFAULT_HTTP_PORT, metavar="PORT", help=(
        "port of the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, "
        "/v1/models, /health), on the host the gRPC API listens on; 0 = off"))
    served_model_name: str = setting("", metavar="NAME", help=(
        "the model name the HTTP API serves and expects in requests (default: --model as given)"))
    metrics_port: int = metrics_port_setting(DEFAULT_METRICS_PORT)
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = logs.level_setting()

    def __post_init__(self) -> None:
        check_metrics_port(self.metrics_port)
        if not self.frontend_name:
            raise ValueError("frontend_name must not be empty")
        if not self.scheduler_addr:
            raise ValueError("scheduler_addr must not be empty")
        if not 0 <= self.http_port <= 65535:
            raise ValueError(f"http_port must be in [0, 65535] (0 = off), got {self.http_port}")
