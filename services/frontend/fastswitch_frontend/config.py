"""FrontendConfig: the frontend service's settings, each declared once (flag, environment
variable, default, help: fastswitch.settings); filled from CLI/env in main only."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from fastswitch import logs, transport
from fastswitch.settings import setting

DEFAULT_PORT = 50051


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
    security: transport.TransportSecurity = field(default_factory=transport.TransportSecurity)
    log_level: str = logs.level_setting()

    def __post_init__(self) -> None:
        if not self.frontend_name:
            raise ValueError("frontend_name must not be empty")
        if not self.scheduler_addr:
            raise ValueError("scheduler_addr must not be empty")
