"""Which engine a worker runs: the model's, or the simulated one (`--simulate`).

The real engine is imported only when it is chosen: it brings torch, and a simulated worker
must stay a small process (benchmarks start tens of them on one machine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastswitch_worker.service.config import WorkerConfig

if TYPE_CHECKING:
    from fastswitch_worker.engine.engine import Engine
    from fastswitch_worker.engine.simulated import SimulatedEngine


def make_engine(config: WorkerConfig) -> Engine | SimulatedEngine:
    """A new engine for `config` (loads the model unless config.simulate). Call it on the
    engine thread: the engine is single-threaded from its construction on."""
    if config.simulate:
        from fastswitch_worker.engine.simulated import SimulatedEngine

        return SimulatedEngine(config.engine, config.simulation)
    from fastswitch_worker.engine.engine import Engine

    return Engine(config.engine)
