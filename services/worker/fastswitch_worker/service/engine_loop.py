"""Runs the Engine on its own thread; other threads talk to it only through commands.

The engine is single-threaded by contract. gRPC handlers (asyncio) call `submit(fn)`; the loop
thread applies pending commands between steps, steps while there is work, and hands every
StepResult to `on_step` (called on the loop thread: it must be quick and thread-safe).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from fastswitch_worker.engine.engine import Engine
from fastswitch_worker.engine.outputs import StepResult

log = logging.getLogger("fastswitch.worker.loop")

Command = Callable[[Engine], None]
IDLE_POLL_S = 0.05


class EngineLoop:
    def __init__(self, engine_factory: Callable[[], Engine],
                 on_step: Callable[[StepResult], None]) -> None:
        self._engine_factory = engine_factory
        self._on_step = on_step
        self._commands: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.engine: Engine | None = None
        self.load_error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def submit(self, command: Command) -> None:
        """Thread-safe: run `command(engine)` on the loop thread before the next step."""
        self._commands.put(command)

    def stop(self) -> None:
        """Thread-safe: finish the current step, wait for copies, end the thread."""
        self._commands.put(None)
        self._thread.join()

    def _run(self) -> None:
        try:
            self.engine = self._engine_factory()
        except BaseException as exc:  # reported through health; the process stays up
            self.load_error = exc
            log.exception("engine failed to load")
            self.stopped.set()
            return
        self.ready.set()
        engine = self.engine
        try:
            while True:
                timeout = 0 if engine.has_work() else IDLE_POLL_S
                if not self._apply_commands(engine, timeout):
                    break
                if engine.has_work():
                    self._on_step(engine.step())
        except BaseException:
            log.exception("engine loop crashed")
            raise
        finally:
            engine.close()
            self.stopped.set()

    def _apply_commands(self, engine: Engine, timeout_s: float) -> bool:
        """Apply every queued command; False once stop() was asked."""
        try:
            command = self._commands.get(timeout=timeout_s) if timeout_s else self._commands.get_nowait()
        except queue.Empty:
            return True
        while True:
            if command is None:
                return False
            try:
                command(engine)
            except Exception:  # one bad command never ends the loop
                log.exception("engine command failed")
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return True
