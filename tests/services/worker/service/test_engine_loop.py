"""EngineLoop liveness: not live while the model loads (a startup probe bounds that), live
while it beats, not live once it is stuck or has ended."""

from __future__ import annotations

import threading
import time

from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.service.engine_loop import EngineLoop

DEADLINE_S = 10.0
ENGINE = EngineConfig(model="tiny", block_size=4, kv_cache_bytes=4 << 20, host_kv_bytes=16 << 20,
                      max_num_batched_tokens=64)


def wait_until(predicate, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_liveness_follows_loading_heartbeats_and_the_end_of_the_loop() -> None:
    may_load = threading.Event()
    fatal: list[BaseException] = []

    def load() -> Engine:
        may_load.wait(DEADLINE_S)
        return Engine(ENGINE)

    loop = EngineLoop(load, lambda result: None, on_step_failed=lambda ids, exc: None,
                      on_fatal=fatal.append)
    assert not loop.is_live(timeout_s=60)
    loop.start()
    assert not loop.is_live(timeout_s=60)  # loading
    may_load.set()
    wait_until(loop.ready.is_set)
    assert loop.is_live(timeout_s=60)

    stuck = threading.Event()
    release = threading.Event()
    loop.submit(lambda engine: (stuck.set(), release.wait(DEADLINE_S)))
    stuck.wait(DEADLINE_S)
    wait_until(lambda: not loop.is_live(timeout_s=0.2))
    release.set()
    wait_until(lambda: loop.is_live(timeout_s=0.2))

    loop.stop(timeout_s=DEADLINE_S)
    assert loop.stopped.is_set() and not loop.is_live(timeout_s=60)
    assert fatal == [] and loop.failure is None
