"""The images the operator deploys (docker/) agree with the pods it builds, and their
HEALTHCHECK really asks grpc.health.v1."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import grpc
import pytest

from fastswitch import transport
from fastswitch.grpc_server import ServiceHealth
from fastswitch_operator import names, pods

DOCKER = Path(__file__).resolve().parents[2] / "docker"
SERVICES = {"worker": names.WORKER_PORT, "scheduler": names.SCHEDULER_PORT,
            "kvstore": names.KVSTORE_PORT}


def dockerfile(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text()


@pytest.mark.parametrize("service", [*SERVICES, "operator"])
def test_images_run_as_the_uid_the_pods_declare(service):
    assert re.search(rf"^USER {pods.APP_UID}:{pods.APP_UID}$", dockerfile(service), re.MULTILINE)


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_service_images_run_the_cli_and_check_the_port_the_probes_use(service, port):
    text = dockerfile(service)
    assert 'ENTRYPOINT ["fastswitch"]' in text
    assert f'CMD ["{service}"]' in text
    assert f"EXPOSE {port}" in text
    assert f'"/usr/local/bin/fastswitch-healthcheck", "{port}"]' in text


def test_operator_image_runs_the_handlers_the_chart_runs():
    text = dockerfile("operator")
    assert 'ENTRYPOINT ["kopf"]' in text and "fastswitch_operator.handlers" in text


async def healthcheck(port: int) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DOCKER / "healthcheck.py"), str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await process.wait()


async def test_healthcheck_passes_only_while_the_service_is_serving():
    server = grpc.aio.server()
    health = ServiceHealth(server, "fastswitch.v1.Worker")
    port = transport.bind(server, "127.0.0.1:0", transport.TransportSecurity())
    await server.start()
    try:
        await health.set(False)
        assert await healthcheck(port) == 1
        await health.set(True)
        assert await healthcheck(port) == 0
    finally:
        await server.stop(0)
    assert await healthcheck(port) == 1  # nothing listening
