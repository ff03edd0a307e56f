"""The images the operator deploys (docker/) agree with the pods it builds, and their
healthcheck really asks grpc.health.v1, over TLS and mTLS too, as the operator's exec probes
run it."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tomllib
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from fastswitch import grpc_server, settings, transport
from fastswitch.grpc_server import ServiceHealth
from fastswitch_frontend.config import FrontendConfig
from fastswitch_operator import build_transport, names, pods
from fastswitch_operator.build_frontend import build_frontend_deployment
from fastswitch_operator.build_workers import build_workers_statefulset
from fastswitch_operator.spec import Images, parse_spec
from fastswitch_scheduler.config import SchedulerConfig

DOCKER = Path(__file__).resolve().parents[2] / "docker"
IMAGES = Images("w", "f", "s", "k", "r", "IfNotPresent", ())
SERVICES = {"worker": names.WORKER_PORT, "frontend": names.FRONTEND_PORT,
            "scheduler": names.SCHEDULER_PORT, "kvstore": names.KVSTORE_PORT}


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
    assert f'"{build_transport.HEALTHCHECK}", "{port}"]' in text
    assert f"COPY docker/healthcheck.py {build_transport.HEALTHCHECK}\n" in text


def test_the_services_listen_by_default_where_the_images_and_pods_expect_them():
    """The images' CMD passes no --listen: their HEALTHCHECK and EXPOSE rely on the CLI's
    defaults (the operator passes --listen as well)."""
    assert SchedulerConfig().listen == f"0.0.0.0:{names.SCHEDULER_PORT}"
    assert FrontendConfig().listen == f"0.0.0.0:{names.FRONTEND_PORT}"
    assert FrontendConfig().scheduler_addr.endswith(f":{names.SCHEDULER_PORT}")


def test_the_frontend_image_exposes_the_openai_api_where_it_listens_by_default():
    assert re.search(rf"^EXPOSE {names.FRONTEND_PORT} {names.FRONTEND_HTTP_PORT}$",
                     dockerfile("frontend"), re.MULTILINE)
    assert FrontendConfig().http_port == names.FRONTEND_HTTP_PORT


def test_the_frontend_image_has_no_torch():
    extra = PYPROJECT["project"]["optional-dependencies"]["frontend"]
    assert not [dependency for dependency in extra if dependency.startswith("torch")]


def test_operator_image_runs_the_handlers_the_chart_runs():
    text = dockerfile("operator")
    assert 'ENTRYPOINT ["kopf"]' in text and "fastswitch_operator.handlers" in text


async def run_healthcheck(*args: str, env: dict[str, str] | None = None) -> int:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DOCKER / "healthcheck.py"), *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(process.wait(), timeout=30)


async def healthcheck(port: int) -> int:
    return await run_healthcheck(str(port))


async def start_health_server(security: transport.TransportSecurity,
                              statuses: dict[str, bool]) -> tuple[grpc.aio.Server, int]:
    """A gRPC server on 127.0.0.1 serving grpc.health.v1 with `statuses` (service -> SERVING)."""
    server = transport.server(security, require_cluster_token=True)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for service, is_serving in statuses.items():
        await servicer.set(service, health_pb2.HealthCheckResponse.SERVING if is_serving
                           else health_pb2.HealthCheckResponse.NOT_SERVING)
    port = transport.bind(server, "127.0.0.1:0", security)
    await server.start()
    return server, port


def test_the_probes_ask_for_the_workers_liveness_service():
    assert build_transport.LIVENESS_SERVICE == grpc_server.LIVENESS_SERVICE


@pytest.mark.parametrize("mutual", [False, True])
def test_the_tls_variables_the_probes_read_say_what_the_flags_say(mutual):
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"},
                                            "tls": {"secretName": "certs", "mutual": mutual}},
                         IMAGES)
    (container,) = build_workers_statefulset(cluster)["spec"]["template"]["spec"]["containers"]
    variables = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    flags = [arg for arg in container["args"] if arg.startswith("--tls-")]
    # The files exist in the pod only: compare the settings, not the configs that check them.
    assert tls_settings([], variables) == tls_settings(flags, {})
    assert tls_settings([], variables)["tls_ca"] == "/etc/fastswitch/tls/ca.crt"


def tls_settings(argv: list[str], environ: dict[str, str]) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser, transport.TransportSecurity)
    return settings.resolve(transport.TransportSecurity, parser.parse_args(argv), environ)


PYPROJECT = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())


@pytest.mark.parametrize("image", [*SERVICES, "operator"])
def test_each_image_installs_the_package_with_its_own_extra(image):
    """Dependencies are declared in pyproject.toml only: an image names its extra, never a
    package of its own."""
    assert image in PYPROJECT["project"]["optional-dependencies"]
    installs = [line for line in dockerfile(image).splitlines() if "pip install" in line]
    assert any(line.rstrip().endswith(f'".[{image}]"') for line in installs), installs
    for line in installs:  # torch (worker) is installed by name, its version from constraints
        assert "==" not in line and ">=" not in line, line
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


async def test_healthcheck_speaks_tls_checking_the_name_it_is_told(tls_files):
    security = transport.TransportSecurity(tls_cert=str(tls_files.server_cert),
                                           tls_key=str(tls_files.server_key))
    server, port = await start_health_server(security, {"": True})
    try:
        # The certificate names localhost; the probe dials 127.0.0.1 and checks the name given.
        assert await run_healthcheck(str(port), env={
            "FASTSWITCH_TLS_CA": str(tls_files.ca), "FASTSWITCH_TLS_SERVER_NAME": "localhost"}) == 0
        assert await run_healthcheck(str(port), env={
            "FASTSWITCH_TLS_CA": str(tls_files.ca),
            "FASTSWITCH_TLS_SERVER_NAME": "demo-workers.team-a.svc"}) == 1
        assert await run_healthcheck(str(port), env={"FASTSWITCH_TLS_CA": ""}) == 1  # plaintext
    finally:
        await server.stop(0)


async def test_healthcheck_presents_its_client_certificate_for_mutual_tls(tls_files):
    security = transport.TransportSecurity(
        tls_cert=str(tls_files.server_cert), tls_key=str(tls_files.server_key),
        tls_client_ca=str(tls_files.ca))
    server, port = await start_health_server(security, {"": True})
    tls = {"FASTSWITCH_TLS_CA": str(tls_files.ca), "FASTSWITCH_TLS_SERVER_NAME": "localhost"}
    try:
        assert await run_healthcheck(str(port), env={
            **tls, "FASTSWITCH_TLS_CERT": str(tls_files.client_cert),
            "FASTSWITCH_TLS_KEY": str(tls_files.client_key)}) == 0
        assert await run_healthcheck(str(port), env={
            **tls, "FASTSWITCH_TLS_CERT": "", "FASTSWITCH_TLS_KEY": ""}) == 1
    finally:
        await server.stop(0)


def _probe_as_run_here(probe: dict, container: dict, tls_files,
                       server_name: str = "demo-workers.team-a.svc") -> tuple[list[str], dict[str, str]]:
    """An exec probe of a built pod, with the image's paths mapped to this machine's files and
    the certificate's name (the test certificate names localhost)."""
    local = {f"{build_transport.TLS_DIR}/{build_transport.TLS_CA}": str(tls_files.ca),
             f"{build_transport.TLS_DIR}/{build_transport.TLS_CERT}": str(tls_files.client_cert),
             f"{build_transport.TLS_DIR}/{build_transport.TLS_KEY}": str(tls_files.client_key)}
    command = probe["exec"]["command"]
    assert command[:2] == ["python", build_transport.HEALTHCHECK]
    env = {e["name"]: local.get(e["value"], e["value"]) for e in container["env"]
           if e["name"].startswith("FASTSWITCH_TLS_")}
    assert env.pop("FASTSWITCH_TLS_SERVER_NAME") == server_name
    return command[2:], {**env, "FASTSWITCH_TLS_SERVER_NAME": "localhost"}


async def test_the_workers_exec_probes_work_against_a_mutual_tls_worker(tls_files):
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"},
                                            "tls": {"secretName": "certs", "mutual": True}},
                         IMAGES)
    (container,) = build_workers_statefulset(cluster)["spec"]["template"]["spec"]["containers"]
    security = transport.TransportSecurity(
        tls_cert=str(tls_files.server_cert), tls_key=str(tls_files.server_key),
        tls_client_ca=str(tls_files.ca))
    # Loaded and ready, but the engine loop has stopped making progress.
    server, port = await start_health_server(
        security, {"": True, grpc_server.LIVENESS_SERVICE: False})
    try:
        results = {}
        for probe in ("readinessProbe", "livenessProbe"):
            args, env = _probe_as_run_here(container[probe], container, tls_files)
            assert args[0] == str(names.WORKER_PORT)
            results[probe] = await run_healthcheck(str(port), *args[1:], env=env)
    finally:
        await server.stop(0)
    assert results == {"readinessProbe": 0, "livenessProbe": 1}


async def test_the_frontends_readiness_probe_works_against_a_mutual_tls_frontend(tls_files):
    cluster = parse_spec("demo", "team-a", {"model": {"preset": "tiny"},
                                            "tls": {"secretName": "certs", "mutual": True}},
                         IMAGES)
    (container,) = build_frontend_deployment(cluster)["spec"]["template"]["spec"]["containers"]
    security = transport.TransportSecurity(
        tls_cert=str(tls_files.server_cert), tls_key=str(tls_files.server_key),
        tls_client_ca=str(tls_files.ca))
    results = {}
    for is_serving in (False, True):
        server, port = await start_health_server(security, {"": is_serving})
        try:
            args, env = _probe_as_run_here(container["readinessProbe"], container, tls_files,
                                           server_name="demo-frontend.team-a.svc")
            assert args == [str(names.FRONTEND_PORT)]
            results[is_serving] = await run_healthcheck(str(port), env=env)
        finally:
            await server.stop(0)
    assert results == {False: 1, True: 0}
