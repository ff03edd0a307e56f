"""`fastswitch frontend | scheduler | worker | kvstore` as the containers and the local stacks run them:
every flag is documented and has an environment variable, and any config of each service
survives the trip through its command line (what `fastswitch up` and `fastswitch bench` do)."""

from __future__ import annotations

import pytest

from fastswitch import settings, transport
from fastswitch_cli.main import build_parser
from fastswitch_frontend.config import FrontendConfig
from fastswitch_kvstore.config import KVStoreConfig
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig, SwitchMode
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig
from fastswitch_worker.service.config import WorkerConfig

SERVICES = {"frontend": FrontendConfig, "scheduler": SchedulerConfig, "worker": WorkerConfig,
            "kvstore": KVStoreConfig}
TOKEN = "a-cluster-token-of-the-test"


def options(command: str) -> list:
    parser = build_parser(command)
    (sub,) = [action for action in parser._actions if action.dest == "command"]
    return [action for action in sub.choices[command]._actions
            if action.option_strings and action.dest != "help"]


@pytest.mark.parametrize("command", SERVICES)
def test_every_flag_has_help_naming_its_environment_variable(command):
    found = options(command)
    assert len(found) >= 10
    for action in found:
        assert action.help and "(env FASTSWITCH_" in action.help, action.option_strings


@pytest.mark.parametrize("command", SERVICES)
def test_every_setting_is_a_flag_of_its_service(command):
    flags = {flag for action in options(command) for flag in action.option_strings}
    for item in settings.declared(SERVICES[command]):
        assert (item.flag or item.file_flag) in flags, item.name


def samples(tls_files) -> dict[str, object]:
    """One config per service with every setting away from its default."""
    security = transport.TransportSecurity(
        tls_cert=str(tls_files.server_cert), tls_key=str(tls_files.server_key),
        tls_client_ca=str(tls_files.ca), tls_ca=str(tls_files.ca), cluster_token=TOKEN)
    engine = EngineConfig(
        model="llama3-8b", load_format="dummy", dtype="bfloat16", device="cpu", seed=3,
        mode=SwitchMode.BASELINE, block_size=8, gpu_memory_fraction=0.5,
        kv_cache_bytes=1 << 20, host_kv_bytes=2 << 20, max_group_blocks=16, kv_reuse=False,
        max_num_batched_tokens=128, max_num_seqs=8, max_model_len=256,
        blocking_swap_in_max_blocks=4, blocking_swap_in_max_batch=1, num_compute_threads=2)
    return {
        "worker": WorkerConfig(
            engine=engine, listen="127.0.0.1:7001", worker_id="w-7",
            advertise_address="w-7.workers:50061", kvstore_addr="127.0.0.1:7002",
            drain_timeout_s=2.5, liveness_timeout_s=60.0, progress_interval_ms=5.0,
            metrics_port=7102, security=security, log_level="debug",
            simulate=True, simulation=SimulatedEngineConfig(
                simulated_step_ms=5.0, simulated_kv_tokens=4096, simulated_host_kv_tokens=8192,
                simulated_kv_bytes_per_token=1024, simulated_copy_gb_per_s=10.0,
                simulated_vocab_size=512, simulated_answer_tokens=7)),
        "scheduler": SchedulerConfig(
            listen="127.0.0.1:7000", workers=("127.0.0.1:7001", "workers.ns.svc:50061"),
            discovery_interval_s=1.5, kvstore_addr="127.0.0.1:7002", policy="trace", tick_ms=7.5, tenants_file="/etc/tenants.json", vtc_input_weight=0.5,
            vtc_output_weight=3.0, vtc_preempt_threshold=10.0, trace_pattern="random",
            trace_update_probability=0.5, trace_num_levels=3, trace_seed=9,
            vtc_quantum=5.0, vtc_finish_guard_tokens=2, tenant_idle_grace_s=0.5,
            max_running_per_worker=4, kv_headroom_tokens=8, kv_admit_headroom_tokens=16,
            max_queued_requests=100,
            max_queued_per_tenant=10, unroutable_timeout_s=3.0, allow_anonymous_admin=True,
            metrics_port=7101, security=security, log_level="warning"),
        "frontend": FrontendConfig(
            listen="127.0.0.1:7004", scheduler_addr="scheduler.ns.svc:50052",
            frontend_name="frontend-7", model="llama3-8b", tenants_file="/etc/tenants.json",
            allow_anonymous_admin=True, http_port=7180, served_model_name="llama-3-8b",
            metrics_port=7100, security=security, log_level="error"),
        "kvstore": KVStoreConfig(
            listen="127.0.0.1:7003", redis_url="redis://:s3cret@cache:6379/1",
            key_prefix="cluster-b", log_level="error", shutdown_grace_s=1.5,
            health_check_interval_s=0.5, redis_timeout_s=0.25, metrics_port=7103,
            security=security),
    }


@pytest.mark.parametrize("command", SERVICES)
def test_a_config_survives_its_command_line(command, tls_files):
    config = samples(tls_files)[command]
    unchanged = [item.name for item, value in settings.values(config) if value == item.default]
    assert unchanged == [], "give the sample a value other than the default"
    args, environ = settings.to_args(config), settings.to_env(config)
    assert TOKEN not in " ".join(args) and "s3cret" not in " ".join(args)
    parsed = build_parser(command).parse_args([command, *args])
    assert settings.from_args(SERVICES[command], parsed, environ) == config


@pytest.mark.parametrize("command", SERVICES)
def test_defaults_need_no_flags(command):
    parsed = build_parser(command).parse_args([command])
    config = settings.from_args(SERVICES[command], parsed, {})
    assert settings.to_args(config) == [] and settings.to_env(config) == {}
