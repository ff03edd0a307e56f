"""`fastswitch up` takes every scheduler and worker setting the services take (the stack fills
in addresses, names and ports itself), with the services' own flags and defaults."""

from __future__ import annotations

from fastswitch import settings
from fastswitch_cli.main import build_parser
from fastswitch_cli.up import STACK_OWNED
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.service.config import WorkerConfig


def test_every_scheduler_and_worker_setting_is_an_up_flag() -> None:
    args = build_parser("up").parse_args(["up"])
    dests = set(vars(args))  # every option's destination, with its default
    for config in (SchedulerConfig, WorkerConfig):
        missing = {d.name for d in settings.declared(config)} - STACK_OWNED - dests
        assert not missing, (config.__name__, missing)


def test_up_reads_them_as_the_services_do() -> None:
    args = build_parser("up").parse_args([
        "up", "--vtc-quantum=32", "--kv-admit-headroom-tokens=64", "--tenant-idle-grace-s=2",
        "--simulate", "--simulated-kv-tokens=768", "--num-compute-threads=2",
        "--progress-interval-ms=10", "--mode=baseline", "--no-kv-reuse"])
    scheduler = settings.from_args(SchedulerConfig, args)
    worker = settings.from_args(WorkerConfig, args)
    assert (scheduler.vtc_quantum, scheduler.kv_admit_headroom_tokens, scheduler.tenant_idle_grace_s) == (32, 64, 2)
    assert worker.simulate and worker.simulation.simulated_kv_tokens == 768
    assert (worker.engine.num_compute_threads, worker.progress_interval_ms) == (2, 10)
    assert worker.engine.mode.value == "baseline" and not worker.engine.kv_reuse


def test_both_modes_compute_with_the_same_threads_by_default() -> None:
    """A comparison between the modes differs only in how they switch."""
    assert EngineConfig(mode="baseline").compute_threads() == EngineConfig(mode="fastswitch").compute_threads()
