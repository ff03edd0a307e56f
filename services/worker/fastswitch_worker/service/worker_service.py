"""The worker's logic between gRPC and the engine thread: the scheduler's session (admit,
preempt, resume, abort; compact progress up), the frontends' streams (requests staged down,
tokens up), KV events, engine failures.

Everything here runs on the asyncio loop except the `*_engine` methods, which run on the
engine thread and hand their results back with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import grpc

from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_worker.engine.errors import InvalidRequestError
from fastswitch_worker.engine.outputs import StepResult
from fastswitch_worker.service import convert
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.engine_loop import EngineLoop
from fastswitch_worker.service.engines import make_engine
from fastswitch_worker.service.frontend_outbox import FrontendOutbox
from fastswitch_worker.service.held import Held, HeldRequests
from fastswitch_worker.service.kvstore_client import KVStoreClient
from fastswitch_worker.service.progress import ProgressBuffer
from fastswitch_worker.service.session import (
    SUPERSEDED_MESSAGE,
    Session,
    SessionRefusedError,
    loggable,
)

if TYPE_CHECKING:
    from fastswitch_worker.engine.engine import Engine

log = logging.getLogger("fastswitch.worker")

# What one session may ask of the worker. The scheduler's own ids fit with room to spare
# (tenant/client id (<= 128)/counter); anything longer is a confused or hostile caller.
MAX_REQUEST_ID_CHARS = 256
MAX_CONVERSATION_ID_CHARS = 512
MAX_STOP_TOKEN_IDS = 1024
ENGINE_FAILED_MESSAGE = "the worker's engine failed; it is restarting"
FAILED_STOP_TIMEOUT_S = 10.0
EXPIRY_CHECK_S = 1.0


class WorkerService:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.engine_loop = EngineLoop(lambda: make_engine(config), self._on_step_engine,
                                      on_step_failed=self._on_step_failed_engine,
                                      on_fatal=self._on_fatal_engine)
        self.kvstore = (KVStoreClient(config.kvstore_addr, config.worker_id,
                                      config.advertise_address or config.listen, config.security)
                        if config.kvstore_addr else None)
        self.session: Session | None = None
        self.held = HeldRequests()
        self.progress = ProgressBuffer(config.progress_interval_ms / 1e3)
        self._flush_handle: asyncio.TimerHandle | None = None
        self.outboxes: dict[str, FrontendOutbox] = {}  # frontend id -> its tokens' outbox
        self.is_draining = False
        self.max_model_len = 0  # prompt + output tokens one request may hold; set by start()
        self.latest_stats = worker_pb2.GetWorkerStatsResponse(worker_id=config.worker_id)
        # Set once the engine is unrecoverable (failure says why): the process should exit.
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self._background: set[asyncio.Task] = set()

    @property
    def is_serving(self) -> bool:
        return self.engine_loop.ready.is_set() and self.failure is None

    async def start(self) -> bool:
        """Load the model (on the engine thread); True once the engine is ready."""
        self.engine_loop.start()
        while not (self.engine_loop.ready.is_set() or self.engine_loop.stopped.is_set()):
            await asyncio.sleep(0.02)
        if not self.engine_loop.ready.is_set():
            return False
        engine = self.engine_loop.engine
        self.max_model_len = min(engine.max_model_len,
                                 engine.kv.layout.num_gpu_blocks * engine.block_size)
        self.latest_stats.capacity.CopyFrom(convert.capacity(engine))
        if self.kvstore is not None:
            await self.kvstore.register(engine.kv.host.num_blocks * engine.block_bytes)
        self._spawn(self._expire_frontends_forever())
        return True

    def _spawn(self, coroutine) -> None:
        task = self.loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def hello(self) -> worker_pb2.WorkerHello:
        engine = self.engine_loop.engine
        mc = engine.model_config
        hello = worker_pb2.WorkerHello(
            worker_id=self.config.worker_id, model=self.config.engine.model,
            max_model_len=self.max_model_len,
            # The engine thread's latest snapshot: reading live engine state from here races.
            capacity=self.latest_stats.capacity, vocab_size=mc.vocab_size,
            eos_token_ids=engine.tokenizer.eos_token_ids, mode=self.config.engine.mode.value,
            held=[held.report() for held in self.held.values()])
        if engine.tokenizer.bos_token_id is not None:
            hello.bos_token_id = engine.tokenizer.bos_token_id
        return hello

    # ---- scheduler sessions ----------------------------------------------------------------
    def open_session(self, epoch: int = 0, peer: str = "") -> Session:
        """Mutates: the caller becomes this worker's scheduler. A live session with a newer
        epoch keeps the worker (SessionRefusedError); an equal or older one is superseded: its
        stream ends ABORTED. Requests are not the session's: the new scheduler adopts them from
        the hello."""
        live = self.session
        if live is not None:
            if epoch < live.epoch:
                log.warning("scheduler session refused: an older epoch", extra={
                    "epoch": epoch, "holder_epoch": live.epoch, "peer": loggable(peer)})
                raise SessionRefusedError(
                    f"a newer scheduler (epoch {live.epoch}) holds this worker's session")
            log.warning("scheduler session handed over", extra={
                "old_epoch": live.epoch, "old_peer": loggable(live.peer), "epoch": epoch,
                "peer": loggable(peer), "num_held_requests": len(self.held)})
            self.close_session(live, grpc.StatusCode.ABORTED, SUPERSEDED_MESSAGE)
        else:
            log.info("scheduler session opened", extra={"epoch": epoch, "peer": loggable(peer)})
        self.progress.take()  # counts the new scheduler has from the hello, or never needs
        self.session = Session(epoch, peer)
        return self.session

    def close_session(self, session: Session, code: grpc.StatusCode | None = None,
                      message: str = "") -> None:
        """Mutates: the scheduler went away or was replaced. Wakes the session's stream, which
        ends with `code` (OK when None). The requests keep running for their frontends."""
        session.close(code, message)
        if self.session is session:
            self.session = None

    def handle(self, session: Session, msg: worker_pb2.SessionRequest) -> None:
        """Mutates: applies one command of `session`; a closed session's commands are ignored
        (a superseded scheduler no longer drives this worker)."""
        if session.closed.is_set():
            return
        kind = msg.WhichOneof("command")
        if kind == "batch":
            for request_id in msg.batch.abort:
                self._abort(request_id)
            for request_id in msg.batch.preempt:
                self._preempt(request_id)
            for request_id in msg.batch.resume:
                self._resume(request_id)
            for request_id in msg.batch.admit:
                self._admit(request_id)
        elif kind == "admit":
            self._admit(msg.admit.request_id)
        elif kind == "preempt":
            self._preempt(msg.preempt.request_id)
        elif kind == "resume":
            self._resume(msg.resume.request_id)
        elif kind == "abort":
            self._abort(msg.abort.request_id)
        elif kind == "update_priorities":
            ranks = dict(msg.update_priorities.priorities)  # the cluster scheduler's ranks
            self.engine_loop.submit(lambda e: e.update_ranks(ranks))
        elif kind == "drain":
            self._start_draining()

    def _admit(self, request_id: str) -> None:
        if not 0 < len(request_id) <= MAX_REQUEST_ID_CHARS:
            self._refuse(request_id[:MAX_REQUEST_ID_CHARS], grpc.StatusCode.INVALID_ARGUMENT,
                         f"request_id must be 1-{MAX_REQUEST_ID_CHARS} characters")
            return
        if self.is_draining and request_id not in self.held:
            self._refuse(request_id, grpc.StatusCode.UNAVAILABLE, "worker is draining")
            return
        held = self.held.get_or_add(request_id)
        held.is_admitted = True
        self._run_if_ready(held)

    def _preempt(self, request_id: str) -> None:
        self.engine_loop.submit(lambda e: _if_live(e, request_id, e.preempt))

    def _resume(self, request_id: str) -> None:
        self.engine_loop.submit(lambda e: _if_live(e, request_id, e.resume))

    def _abort(self, request_id: str) -> None:
        """Mutates: forget the request; the engine frees its KV."""
        held = self.held.pop(request_id)
        if held is not None and held.is_in_engine:
            self.engine_loop.submit(lambda e: e.abort(request_id))

    def _run_if_ready(self, held: Held) -> None:
        """Mutates: an admitted and staged request goes to the engine."""
        if held.is_runnable:
            held.is_in_engine = True
            stage = held.stage
            self.engine_loop.submit(lambda e: self._admit_engine(e, stage))

    # ---- frontend streams ------------------------------------------------------------------
    def open_stream(self, frontend_id: str) -> asyncio.Queue:
        """Mutates: the frontend's (new) stream; returns the queue it sends from."""
        outbox = self.outboxes.get(frontend_id)
        if outbox is None:
            outbox = self.outboxes[frontend_id] = FrontendOutbox(frontend_id)
            log.info("frontend stream opened", extra={"frontend": loggable(frontend_id)})
        return outbox.attach()

    def close_stream(self, frontend_id: str, queue: asyncio.Queue) -> None:
        outbox = self.outboxes.get(frontend_id)
        if outbox is not None:
            outbox.detach(queue)

    def handle_stream(self, frontend_id: str, msg: worker_pb2.StreamRequest) -> None:
        """Mutates: applies one message of a frontend's stream."""
        kind = msg.WhichOneof("command")
        if kind == "stage":
            self._stage(frontend_id, msg.stage)
        elif kind == "cancel":
            held = self.held.get(msg.cancel.request_id)
            if held is not None and held.frontend_id in ("", frontend_id):
                self._abort(msg.cancel.request_id)

    def _stage(self, frontend_id: str, stage: worker_pb2.StageCommand) -> None:
        held = self.held.get(stage.request_id)
        if held is not None and held.stage is not None and held.frontend_id == frontend_id:
            return  # staged again after the frontend's stream reconnected: nothing to do
        problem = self._stage_problem(frontend_id, stage)
        if problem is not None:
            code, reason = problem
            log.debug("stage refused", extra={"request_id": loggable(stage.request_id),
                                              "code": code.name, "reason": reason})
            if code is not grpc.StatusCode.ALREADY_EXISTS:  # else the id is another's
                self.held.pop(stage.request_id)
            self._refuse(stage.request_id[:MAX_REQUEST_ID_CHARS], code, reason)
            return
        held = self.held.get_or_add(stage.request_id)
        held.frontend_id = frontend_id
        held.stage = stage
        self._run_if_ready(held)

    def _stage_problem(self, frontend_id: str, stage: worker_pb2.StageCommand
                       ) -> tuple[grpc.StatusCode, str] | None:
        """Does not mutate: why a stage is refused before it reaches the engine, or None."""
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not 0 < len(stage.request_id) <= MAX_REQUEST_ID_CHARS:
            return invalid, f"request_id must be 1-{MAX_REQUEST_ID_CHARS} characters"
        held = self.held.get(stage.request_id)
        if held is not None and (held.stage is not None or held.frontend_id not in ("", frontend_id)):
            return grpc.StatusCode.ALREADY_EXISTS, "request id is already in use"
        if self.is_draining and (held is None or not held.is_admitted):
            return grpc.StatusCode.UNAVAILABLE, "worker is draining"
        if len(stage.prompt_token_ids) > self.max_model_len:
            return invalid, (f"prompt ({len(stage.prompt_token_ids)} tokens) exceeds the model's "
                             f"context of {self.max_model_len} tokens")
        if len(stage.conversation_id) > MAX_CONVERSATION_ID_CHARS:
            return invalid, f"conversation_id must be at most {MAX_CONVERSATION_ID_CHARS} characters"
        if len(stage.stop.stop_token_ids) > MAX_STOP_TOKEN_IDS:
            return invalid, f"at most {MAX_STOP_TOKEN_IDS} stop_token_ids"
        return None

    async def _expire_frontends_forever(self) -> None:
        """A frontend gone for good (away FRONTEND_GRACE_S, or not reading) loses its requests:
        they are aborted here and the scheduler hears CANCELLED."""
        while True:
            await asyncio.sleep(EXPIRY_CHECK_S)
            now_s = time.monotonic()
            for frontend_id, outbox in list(self.outboxes.items()):
                if outbox.is_gone(now_s):
                    self._expire_frontend(frontend_id, outbox)

    def _expire_frontend(self, frontend_id: str, outbox: FrontendOutbox) -> None:
        del self.outboxes[frontend_id]
        outbox.close()
        mine = self.held.of_frontend(frontend_id)
        log.warning("frontend gone: its requests are aborted", extra={
            "frontend": loggable(frontend_id), "num_requests": len(mine),
            "overflowing": outbox.is_overflowing})
        for held in mine:
            self._abort(held.request_id)
            self._refuse(held.request_id, grpc.StatusCode.CANCELLED,
                         "the frontend that owned the request went away")

    def _start_draining(self) -> None:
        """Tell the scheduler at once, so it stops routing here."""
        self.is_draining = True
        self._report(worker_pb2.StepEvent(is_draining=True))

    def _refuse(self, request_id: str, code: grpc.StatusCode, reason: str) -> None:
        """Tells the scheduler the request ends here with `code` (it fails it, or moves it on
        UNAVAILABLE, and tells the owning frontend)."""
        if self.session is None:
            return  # the next scheduler does not find it held, and places it again
        change = worker_pb2.RequestStateChange(
            request_id=request_id, state=common_pb2.REQUEST_STATE_ABORTED, reason=reason,
            error_code=code.value[0])
        self._report(worker_pb2.StepEvent(state_changes=[change]))

    def _report(self, event: worker_pb2.StepEvent) -> None:
        """Mutates: the event joins what the scheduler hears next; sent now when it is due
        (ProgressBuffer), else when the interval ends."""
        self.progress.add(event)
        if self.progress.is_due(time.monotonic()):
            self._flush_progress()
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_later(self.progress.interval_s,
                                                      self._flush_progress)

    def _flush_progress(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        event = self.progress.take()
        if event is not None and self.session is not None:
            self.session.events.put_nowait(worker_pb2.SessionResponse(step=event))

    # ---- engine thread ----------------------------------------------------------------------
    def _admit_engine(self, engine: Engine, stage: worker_pb2.StageCommand) -> None:
        try:
            engine.add_request(
                stage.request_id, list(stage.prompt_token_ids),
                sampling=convert.sampling_from_proto(stage.sampling),
                stop=convert.stop_from_proto(stage.stop), conversation_id=stage.conversation_id,
                client_priority=stage.priority)
        except (InvalidRequestError, ValueError) as exc:
            self.loop.call_soon_threadsafe(self._refuse_admitted, stage.request_id,
                                           grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # a bug, not a bad request: the id was free, undo the admit
            log.exception("admit failed", extra={"request_id": loggable(stage.request_id)})
            engine.abort(stage.request_id)
            self.loop.call_soon_threadsafe(
                self._refuse_admitted, stage.request_id, grpc.StatusCode.INTERNAL,
                f"internal error admitting the request ({type(exc).__name__})")

    def _on_step_failed_engine(self, request_ids: tuple[str, ...], exc: BaseException) -> None:
        # Names the failure for the client without handing it the worker's internals (the
        # log line has those).
        reason = f"internal error in the worker's engine step ({type(exc).__name__})"
        self.loop.call_soon_threadsafe(self._report_failed, request_ids, reason)

    def _on_fatal_engine(self, exc: BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self._fail, exc)
        except RuntimeError:  # the asyncio loop is already closed: nobody left to tell
            pass

    def _on_step_engine(self, result: StepResult) -> None:
        engine = self.engine_loop.engine
        step = convert.StepReport.of(result, engine)
        step.event.is_draining = self.is_draining
        stats = worker_pb2.GetWorkerStatsResponse(
            worker_id=self.config.worker_id, capacity=step.event.capacity, swap=step.event.swap,
            num_running_requests=len(engine.queues.running),
            num_swapped_requests=len(engine.queues.parked),
            num_waiting_requests=len(engine.queues.waiting))
        self.loop.call_soon_threadsafe(self._deliver, step, stats)

    # ---- back on the asyncio loop ---------------------------------------------------------
    def _refuse_admitted(self, request_id: str, code: grpc.StatusCode, reason: str) -> None:
        self.held.pop(request_id)
        self._refuse(request_id, code, reason)

    def _report_failed(self, request_ids: tuple[str, ...], reason: str) -> None:
        """The engine aborted these requests after a failed step: tell the scheduler, with
        INTERNAL, before the engine's own ABORTED changes reach it."""
        for request_id in request_ids:
            if self.held.pop(request_id) is not None:  # else it was aborted meanwhile
                self._refuse(request_id, grpc.StatusCode.INTERNAL, reason)

    def _fail(self, exc: BaseException) -> None:
        """The engine is unrecoverable: end the session (the scheduler moves its requests)
        and the frontends' streams, and raise `failed`, on which the server stops and the
        process exits non-zero."""
        self.failure = exc
        if self.session is not None:
            self.close_session(self.session, grpc.StatusCode.UNAVAILABLE, ENGINE_FAILED_MESSAGE)
        for outbox in self.outboxes.values():
            outbox.close()
        self.failed.set()

    def _deliver(self, step: convert.StepReport, stats: worker_pb2.GetWorkerStatsResponse) -> None:
        """Mutates: the step's counts to the scheduler, its tokens to their frontends."""
        self.latest_stats = stats
        by_frontend: dict[str, worker_pb2.StreamResponse] = {}

        def response_of(request_id: str) -> worker_pb2.StreamResponse | None:
            held = self.held.get(request_id)
            if held is None or not held.frontend_id:
                return None  # aborted meanwhile: nobody waits for it
            response = by_frontend.get(held.frontend_id)
            if response is None:
                response = by_frontend[held.frontend_id] = worker_pb2.StreamResponse(
                    step=step.event.step)
            return response

        for change in step.state_changes:
            if (held := self.held.get(change.request_id)) is not None:
                held.state = change.state
            if (response := response_of(change.request_id)) is not None:
                response.state_changes.append(change)
        for output in step.outputs:
            if (response := response_of(output.request_id)) is not None:
                response.outputs.append(output)
                held = self.held.get(output.request_id)
                held.num_generated_tokens = output.usage.num_generated_tokens
                if output.finish_reason:
                    self.held.pop(output.request_id)
        for frontend_id, response in by_frontend.items():
            if (outbox := self.outboxes.get(frontend_id)) is not None:
                outbox.put(response)
        self._report(step.event)
        event = step.event
        if self.kvstore is not None and (event.kv_published or event.kv_evicted_conversation_ids):
            self._spawn(self._sync_kvstore(event))

    async def _sync_kvstore(self, event: worker_pb2.StepEvent) -> None:
        for conversation_id in event.kv_evicted_conversation_ids:
            await self.kvstore.evict(conversation_id)
        for entry in event.kv_published:
            for conversation_id in await self.kvstore.publish(entry):
                self.engine_loop.submit(lambda e, cid=conversation_id: e.evict_conversation(cid))

    def num_live_requests(self) -> int:
        return self.latest_stats.num_running_requests + self.latest_stats.num_swapped_requests \
            + self.latest_stats.num_waiting_requests

    async def drain(self) -> None:
        """Stop admitting; let running requests finish for up to drain_timeout_s; hand the
        rest back (UNAVAILABLE "draining": the scheduler moves them)."""
        self._start_draining()
        deadline = self.loop.time() + self.config.drain_timeout_s
        while self.held.in_engine() and self.failure is None and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for held in self.held.values():
            self._abort(held.request_id)
            self._refuse(held.request_id, grpc.StatusCode.UNAVAILABLE, "draining")
        if self.session is not None:
            self.close_session(self.session)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        for outbox in self.outboxes.values():
            outbox.close()
        if self.engine_loop.ready.is_set():
            # A failed engine may hang in its last copies: do not wait on it for ever.
            timeout_s = None if self.failure is None else FAILED_STOP_TIMEOUT_S
            await asyncio.to_thread(self.engine_loop.stop, timeout_s)
        if self.kvstore is not None:
            await self.kvstore.close()


def _if_live(engine: Engine, request_id: str, action) -> None:
    request = engine.requests.get(request_id)
    if request is not None and not request.status.is_done:
        action(request_id)
