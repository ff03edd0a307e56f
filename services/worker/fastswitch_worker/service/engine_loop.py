"""Runs the Engine on its own thread; other threads talk to it only through commands.

The engine is single-threaded by contract. gRPC handlers (asyncio) call `submit(fn)`; the loop
thread applies pending commands between steps, steps while there is work, and hands every
StepResult to `on_step`. A step that raises costs only its own requests: the engine aborts
them and `on_step_failed` reports them. When the engine cannot be trusted any more (its
bookkeeping is broken, steps keep failing, or the loop itself raised) the thread ends and
`on_fatal` says why. Every callback runs on the loop thread: it must be quick and
thread-safe.

The thread beats a heartbeat on every iteration, idle polls included, so a stuck loop shows.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fastswitch_worker.engine.errors import EngineInconsistentError
from fastswitch_worker.engine.outputs import StepResult

if TYPE_CHECKING:
    from fastswitch_worker.engine.engine import Engine

log = logging.getLogger("fastswitch.worker.loop")

Command = Callable[["Engine"], None]
IDLE_POLL_S = 0.05
# A fault that survives this many steps in a row (no step between them ran the model
# successfully) is not one bad request: stop trusting the engine.
MAX_CONSECUTIVE_STEP_FAILURES = 3


class EngineUnrecoverableError(RuntimeError):
    """The engine must not step again; the worker should exit and be restarted."""


class EngineLoop:
    def __init__(self, engine_factory: Callable[[], Engine],
                 on_step: Callable[[StepResult], None], *,
                 on_step_failed: Callable[[tuple[str, ...], BaseException], None],
                 on_fatal: Callable[[BaseException], None]) -> None:
        self._engine_factory = engine_factory
        self._on_step = on_step
        self._on_step_failed = on_step_failed
        self._on_fatal = on_fatal
        self._commands: queue.SimpleQueue[Command | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="engine-loop", daemon=True)
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self.engine: Engine | None = None
        self.load_error: BaseException | None = None
        self.failure: BaseException | None = None  # why the engine became unrecoverable
        self.heartbeat_s = time.monotonic()  # time.monotonic() of the loop's latest iteration
        self._num_consecutive_failures = 0

    def start(self) -> None:
        self._thread.start()

    def submit(self, command: Command) -> None:
        """Thread-safe: run `command(engine)` on the loop thread before the next step."""
        self._commands.put(command)

    def stop(self, timeout_s: float | None = None) -> None:
        """Thread-safe: finish the current step, wait for copies, end the thread (waiting at
        most `timeout_s` for it)."""
        self._commands.put(None)
        self._thread.join(timeout_s)

    def is_live(self, timeout_s: float) -> bool:
        """Thread-safe: the loop runs and beat within `timeout_s`. False while the model loads
        (a startup probe bounds that), and once the thread has ended."""
        if not self.ready.is_set() or self.stopped.is_set() or not self._thread.is_alive():
            return False
        return time.monotonic() - self.heartbeat_s <= timeout_s

    def _run(self) -> None:
        try:
            self.engine = self._engine_factory()
        except BaseException as exc:  # the server sees load_error and exits non-zero
            self.load_error = exc
            log.error("engine failed to load: %s", exc, exc_info=exc)
            self.stopped.set()
            return
        self.heartbeat_s = time.monotonic()
        self.ready.set()
        engine = self.engine
        try:
            while True:
                self.heartbeat_s = time.monotonic()
                timeout = 0 if engine.has_work() else IDLE_POLL_S
                if not self._apply_commands(engine, timeout):
                    break
                self.heartbeat_s = time.monotonic()
                if engine.has_work():
                    self._step(engine)
        except BaseException as exc:
            self.failure = exc
            log.error("engine unrecoverable, the worker stops serving: %r", exc, exc_info=exc)
            self._on_fatal(exc)
        finally:
            try:
                engine.close()
            except Exception:
                log.exception("engine close failed")
            self.stopped.set()

    def _step(self, engine: Engine) -> None:
        """One step; a failure aborts the step's requests. Raises when the engine is beyond
        repair (the caller ends the loop)."""
        try:
            result = engine.step()
            self._on_step(result)
        except Exception as exc:
            self._num_consecutive_failures += 1
            try:
                request_ids = engine.fail_step()
            except EngineInconsistentError as broken:
                # Still a definite status for the step's requests (one of them may be what
                # broke it: it must not be retried elsewhere as if nothing happened).
                self._on_step_failed(broken.request_ids, exc)
                raise
            log.error("engine step failed; aborted its %d request(s): %r", len(request_ids), exc,
                      exc_info=exc, extra={"num_consecutive_failures": self._num_consecutive_failures})
            self._on_step_failed(request_ids, exc)
            if self._num_consecutive_failures >= MAX_CONSECUTIVE_STEP_FAILURES:
                raise EngineUnrecoverableError(
                    f"{self._num_consecutive_failures} engine steps failed in a row") from exc
        else:
            # Only a step that ran the model proves a model fault gone (after a failure the
            # next step often just reports the aborts).
            if result.num_batched_tokens:
                self._num_consecutive_failures = 0

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
