"""spec.{scheduler,workers}.settings: every scheduler and worker setting is reachable from the
FastSwitchCluster spec, as the services' own CLI reads it, and nothing else is."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fastswitch import settings
from fastswitch_cli.main import build_parser
from fastswitch_operator.children import build_children
from fastswitch_operator.spec import Images, InvalidSpecError, parse_spec
from fastswitch_operator.spec_settings import (
    OWNED_ELSEWHERE,
    SCHEDULER_SETTINGS,
    WORKER_SETTINGS,
    snake_case,
)
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.service.config import WorkerConfig

CRD = Path(__file__).resolve().parents[2] / "charts/fastswitch/crds/fastswitchclusters.fastswitch.io.yaml"
IMAGES = Images("w:1", "f:1", "s:1", "k:1", "redis:7", "IfNotPresent", ())


def container_args(spec: dict, command: str) -> list[str]:
    for child in build_children(parse_spec("demo", "ns", spec, IMAGES)):
        template = child.get("spec", {}).get("template")
        for container in (template or {}).get("spec", {}).get("containers", []):
            if container.get("args", [None])[0] == command:
                return container["args"]
    raise AssertionError(f"no {command} container")


@pytest.mark.parametrize(("config", "allowed"), [(SchedulerConfig, SCHEDULER_SETTINGS),
                                                 (WorkerConfig, WORKER_SETTINGS)])
def test_every_setting_is_either_a_spec_field_or_a_setting(config, allowed) -> None:
    names = {d.name for d in settings.declared(config)}
    listed = {snake_case(name) for name in allowed}
    assert listed <= names  # each entry names a real setting
    assert names - OWNED_ELSEWHERE == listed  # and none is left out


def test_settings_reach_the_services_as_their_cli_reads_them() -> None:
    spec = {"model": {"preset": "tiny"},
            "scheduler": {"settings": {"vtcQuantum": 32.5, "kvAdmitHeadroomTokens": 64,
                                       "tenantIdleGraceS": 2, "maxRunningPerWorker": 8}},
            "workers": {"settings": {"numComputeThreads": 3, "kvReuse": False,
                                     "progressIntervalMs": 10, "maxNumSeqs": 16}}}
    read = {}
    for command, config in (("scheduler", SchedulerConfig), ("worker", WorkerConfig)):
        args = container_args(spec, command)
        read[command] = settings.resolve(config, build_parser(command).parse_args(args), {})
    assert (read["scheduler"]["vtc_quantum"], read["scheduler"]["kv_admit_headroom_tokens"],
            read["scheduler"]["tenant_idle_grace_s"], read["scheduler"]["max_running_per_worker"]) == (32.5, 64, 2, 8)
    assert (read["worker"]["num_compute_threads"], read["worker"]["kv_reuse"],
            read["worker"]["progress_interval_ms"], read["worker"]["max_num_seqs"]) == (3, False, 10, 16)


@pytest.mark.parametrize("settings_spec", [
    {"policy": "fcfs"},  # a spec field of its own (spec.scheduler.policy)
    {"vtcQuantum": -1},
    {"vtcQuantum": "a lot"},
])
def test_unknown_or_invalid_settings_are_refused_with_their_path(settings_spec) -> None:
    with pytest.raises(InvalidSpecError, match=r"spec\.scheduler\.settings\."):
        parse_spec("demo", "ns", {"model": {"preset": "tiny"}, "scheduler": {"settings": settings_spec}},
                   IMAGES)


def test_the_crd_declares_the_same_settings() -> None:
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    for component, allowed in (("scheduler", SCHEDULER_SETTINGS), ("workers", WORKER_SETTINGS)):
        declared = spec[component]["properties"]["settings"]["properties"]
        assert {name: schema["type"] for name, schema in declared.items()} == allowed
