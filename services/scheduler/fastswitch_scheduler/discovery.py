"""Worker discovery: each configured target (host:port) may name many workers.

A Kubernetes headless Service name resolves to one address per ready worker pod; a plain
IP resolves to itself. The scheduler re-resolves periodically and keeps one link per address.
"""

from __future__ import annotations

import asyncio
import logging
import socket

log = logging.getLogger("fastswitch.scheduler.discovery")


def split_target(target: str) -> tuple[str, str]:
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"worker target must be HOST:PORT, got {target!r}")
    return host.strip("[]"), port


async def resolve_targets(targets: tuple[str, ...]) -> dict[str, str]:
    """Every address the targets name now -> the host name it was found under (what a TLS
    certificate names: pods are dialled by IP, verified by their Service's name). A target
    that does not resolve names none."""
    loop = asyncio.get_running_loop()
    addresses: dict[str, str] = {}
    for target in targets:
        host, port = split_target(target)
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            log.warning("cannot resolve worker target", extra={"target": target, "error": str(exc)})
            continue
        for family, *_, sockaddr in infos:
            ip = sockaddr[0]
            addresses[f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"] = host
    return addresses
