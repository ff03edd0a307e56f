"""The flags the operator writes into pods are flags the `fastswitch` command accepts, and they
set the settings they are meant to, so a renamed CLI option fails here rather than in a
crash-looping pod."""

from __future__ import annotations

import pytest

from fastswitch import settings
from fastswitch_cli.main import build_parser
from fastswitch_frontend.config import FrontendConfig
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_operator import names
from fastswitch_operator.build_config import config_data
from fastswitch_operator.children import build_children
from fastswitch_operator.spec import Images, parse_spec
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig, SwitchMode
from fastswitch_worker.service.config import WorkerConfig

IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())
SPECS = [
    {"model": {"preset": "tiny"}},
    {"model": {"preset": "tiny", "dtype": "bfloat16"},
     "workers": {"mode": "baseline", "blockSize": 8, "hostSwapBytes": "2Gi", "drainTimeoutSeconds": 5},
     "scheduler": {"policy": "trace", "trace": {"pattern": "random", "updateProbability": 0.02, "seed": 3}}},
    {"model": {"preset": "tiny"},
     "scheduler": {"policy": "vtc", "vtc": {"preemptThreshold": 128},
                   "tenantsSecret": {"name": "tenants", "key": "tenants.json"}}},
    {"model": {"preset": "tiny"}, "tls": {"secretName": "certs"},
     "scheduler": {"maxQueuedRequests": 64, "maxQueuedPerTenant": 8, "unroutableTimeoutSeconds": 2.5}},
    {"model": {"preset": "tiny"}, "tls": {"secretName": "certs", "mutual": True},
     "kvstore": {"redis": {"url": "redis://:pw@cache:6379/0"}},
     "frontend": {"replicas": 3, "autoscaling": {"maxReplicas": 6}}},
]


def fastswitch_containers(children: list[dict]) -> list[dict]:
    containers = []
    for child in children:
        template = child.get("spec", {}).get("template")
        if template:
            containers += [c for c in template["spec"]["containers"] if c.get("command") == ["fastswitch"]]
    return containers


@pytest.mark.parametrize("spec", SPECS)
def test_every_service_container_parses_with_the_real_cli(spec: dict) -> None:
    containers = fastswitch_containers(build_children(parse_spec("demo", "ns", spec, IMAGES)))
    assert {c["args"][0] for c in containers} == {"worker", "frontend", "scheduler", "kvstore"}
    for container in containers:
        args = build_parser(container["args"][0]).parse_args(container["args"])
        assert args.command == container["args"][0]


CONFIGS = {"worker": WorkerConfig, "frontend": FrontendConfig, "scheduler": SchedulerConfig,
           "kvstore": KVStoreConfig}


def parsed(spec: dict) -> dict[str, dict]:
    """{command: the settings its container's flags set, as the CLI reads them}."""
    containers = fastswitch_containers(build_children(parse_spec("demo", "ns", spec, IMAGES)))
    return {c["args"][0]: settings.resolve(CONFIGS[c["args"][0]],
                                           build_parser(c["args"][0]).parse_args(c["args"]), {})
            for c in containers}


def test_queue_caps_reach_the_scheduler_as_the_cli_reads_them():
    scheduler = parsed(SPECS[3])["scheduler"]
    assert (scheduler["max_queued_requests"], scheduler["max_queued_per_tenant"],
            scheduler["unroutable_timeout_s"]) == (64, 8, 2.5)


def test_the_frontends_call_the_scheduler_where_it_listens():
    parsed_specs = parsed(SPECS[0])
    frontend, scheduler = parsed_specs["frontend"], parsed_specs["scheduler"]
    assert scheduler["listen"] == f"0.0.0.0:{names.SCHEDULER_PORT}"
    assert frontend["listen"] == f"0.0.0.0:{names.FRONTEND_PORT}"
    # The OpenAI-compatible API on the port the container, Service and policy open.
    assert frontend["http_port"] == names.FRONTEND_HTTP_PORT
    assert frontend["scheduler_addr"] == f"demo-scheduler.ns.svc:{names.SCHEDULER_PORT}"
    # The kubelet expands the pod's name from the downward API variable.
    assert frontend["frontend_name"] == "$(FASTSWITCH_POD_NAME)"


def test_the_frontends_and_the_scheduler_read_the_same_tenants_file():
    parsed_specs = parsed(SPECS[2])
    assert parsed_specs["frontend"]["tenants_file"] == "/etc/fastswitch/tenants/tenants.json"
    assert parsed_specs["scheduler"]["tenants_file"] == parsed_specs["frontend"]["tenants_file"]
    assert "tenants_file" not in parsed(SPECS[0])["frontend"]


def test_worker_settings_reach_the_worker_as_the_cli_reads_them():
    worker = parsed(SPECS[1])["worker"]
    assert (worker["mode"], worker["block_size"], worker["host_kv_bytes"],
            worker["drain_timeout_s"], worker["dtype"]) == (
        SwitchMode.BASELINE, 8, 2 * 2**30, 5, "bfloat16")
    assert parsed(SPECS[0])["worker"]["gpu_memory_fraction"] == 0.85


def test_every_service_gets_the_tls_files_and_mutual_tls_asks_for_client_certificates():
    for spec, mutual in ((SPECS[3], False), (SPECS[4], True)):
        for command, values in parsed(spec).items():
            assert (values["tls_cert"], values["tls_key"], values["tls_ca"]) == (
                "/etc/fastswitch/tls/tls.crt", "/etc/fastswitch/tls/tls.key",
                "/etc/fastswitch/tls/ca.crt"), command
            assert values.get("tls_client_ca") == (
                "/etc/fastswitch/tls/ca.crt" if mutual else None), command


def test_the_shared_configmap_holds_variables_the_services_read():
    cluster = parse_spec("demo", "ns", SPECS[0], IMAGES)
    shared = set(config_data(cluster)) - {"HF_HUB_OFFLINE"}
    read = set().union(*(settings.env_names(config) for config in
                         (WorkerConfig, FrontendConfig, SchedulerConfig)))
    assert shared <= read
    # The frontends find their tokenizer's model and their log level there.
    assert {"FASTSWITCH_MODEL", "FASTSWITCH_LOG_LEVEL"} <= settings.env_names(FrontendConfig)


def test_the_crd_defaults_are_the_services_defaults():
    """A spec that leaves a setting out gets what `fastswitch scheduler|worker` would use."""
    cluster = parse_spec("demo", "ns", SPECS[0], IMAGES)
    scheduler, engine = SchedulerConfig(), EngineConfig()
    assert (cluster.scheduler.policy, cluster.scheduler.tick_ms,
            cluster.scheduler.max_queued_requests, cluster.scheduler.max_queued_per_tenant,
            cluster.scheduler.unroutable_timeout_seconds) == (
        scheduler.policy, scheduler.tick_ms, scheduler.max_queued_requests,
        scheduler.max_queued_per_tenant, scheduler.unroutable_timeout_s)
    assert (cluster.workers.block_size, cluster.workers.kv_memory_fraction,
            cluster.workers.mode) == (engine.block_size, engine.gpu_memory_fraction,
                                      engine.mode.value)
