"""The worker's logic between gRPC and the engine thread: sessions, commands, KV events,
engine failures.

Everything here runs on the asyncio loop except the `*_engine` methods, which run on the
engine thread and hand their results back with call_soon_threadsafe.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_worker.engine.engine import Engine, InvalidRequestError
from fastswitch_worker.engine.outputs import StepResult
from fastswitch_worker.service import convert
from fastswitch_worker.service.config import WorkerConfig
from fastswitch_worker.service.engine_loop import EngineLoop
from fastswitch_worker.service.kvstore_client import KVStoreClient
from fastswitch_worker.service.session import (
    SUPERSEDED_MESSAGE,
    Session,
    SessionRefusedError,
    loggable,
)

log = logging.getLogger("fastswitch.worker")

# What one session may ask of the worker. The scheduler's own ids fit with room to spare
# (tenant/client id (<= 128)/counter); anything longer is a confused or hostile caller.
MAX_REQUEST_ID_CHARS = 256
MAX_CONVERSATION_ID_CHARS = 512
MAX_STOP_TOKEN_IDS = 1024
ENGINE_FAILED_MESSAGE = "the worker's engine failed; it is restarting"
FAILED_STOP_TIMEOUT_S = 10.0


class WorkerService:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.engine_loop = EngineLoop(lambda: Engine(config.engine), self._on_step_engine,
                                      on_step_failed=self._on_step_failed_engine,
                                      on_fatal=self._on_fatal_engine)
        self.kvstore = (KVStoreClient(config.kvstore_addr, config.worker_id,
                                      config.advertise_address or config.listen, config.security)
                        if config.kvstore_addr else None)
        self.session: Session | None = None
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
        return True

    def hello(self) -> worker_pb2.WorkerHello:
        engine = self.engine_loop.engine
        mc = engine.model_config
        hello = worker_pb2.WorkerHello(
            worker_id=self.config.worker_id, model=self.config.engine.model,
            max_model_len=self.max_model_len,
            # The engine thread's latest snapshot: reading live engine state from here races.
            capacity=self.latest_stats.capacity, vocab_size=mc.vocab_size,
            eos_token_ids=engine.tokenizer.eos_token_ids, mode=self.config.engine.mode.value)
        if engine.tokenizer.bos_token_id is not None:
            hello.bos_token_id = engine.tokenizer.bos_token_id
        return hello

    # ---- sessions -------------------------------------------------------------------------
    def open_session(self, epoch: int = 0, peer: str = "") -> Session:
        """Mutates: the caller becomes this worker's scheduler. A live session with a newer
        epoch keeps the worker (SessionRefusedError); an equal or older one is superseded: its
        stream ends ABORTED and its requests are aborted."""
        live = self.session
        if live is not None:
            if epoch < live.epoch:
                log.warning("scheduler session refused: an older epoch", extra={
                    "epoch": epoch, "holder_epoch": live.epoch, "peer": loggable(peer)})
                raise SessionRefusedError(
                    f"a newer scheduler (epoch {live.epoch}) holds this worker's session")
            log.warning("scheduler session handed over", extra={
                "old_epoch": live.epoch, "old_peer": loggable(live.peer), "epoch": epoch,
                "peer": loggable(peer), "num_aborted_requests": len(live.request_ids)})
            self.close_session(live, grpc.StatusCode.ABORTED, SUPERSEDED_MESSAGE)
        else:
            log.info("scheduler session opened", extra={"epoch": epoch, "peer": loggable(peer)})
        self.session = Session(epoch, peer)
        return self.session

    def close_session(self, session: Session, code: grpc.StatusCode | None = None,
                      message: str = "") -> None:
        """Mutates: the scheduler went away or was replaced: its requests have no reader any
        more. Wakes the session's stream, which ends with `code` (OK when None)."""
        for request_id in session.request_ids:
            self.engine_loop.submit(lambda e, rid=request_id: e.abort(rid))
        session.request_ids.clear()
        session.close(code, message)
        if self.session is session:
            self.session = None

    def handle(self, session: Session, msg: worker_pb2.SessionRequest) -> None:
        """Mutates: applies one command of `session`; a closed session's commands are ignored
        (a superseded scheduler no longer drives this worker)."""
        if session.closed.is_set():
            return
        kind = msg.WhichOneof("command")
        if kind == "admit":
            admit = msg.admit
            problem = self._admit_problem(session, admit)
            if problem is not None:
                code, reason = problem
                log.debug("admit refused", extra={"request_id": loggable(admit.request_id),
                                                  "code": code.name, "reason": reason})
                self._refuse(session, admit.request_id[:MAX_REQUEST_ID_CHARS], code, reason)
                return
            session.request_ids.add(admit.request_id)
            self.engine_loop.submit(lambda e: self._admit_engine(e, session, admit))
        elif kind == "preempt":
            self.engine_loop.submit(lambda e: _if_live(e, msg.preempt.request_id, e.preempt))
        elif kind == "resume":
            self.engine_loop.submit(lambda e: _if_live(e, msg.resume.request_id, e.resume))
        elif kind == "abort":
            session.request_ids.discard(msg.abort.request_id)
            self.engine_loop.submit(lambda e: e.abort(msg.abort.request_id))
        elif kind == "update_priorities":
            ranks = dict(msg.update_priorities.priorities)  # the cluster scheduler's ranks
            self.engine_loop.submit(lambda e: e.update_ranks(ranks))
        elif kind == "drain":
            self._start_draining()

    def _admit_problem(self, session: Session, admit: worker_pb2.AdmitCommand
                       ) -> tuple[grpc.StatusCode, str] | None:
        """Does not mutate: why an admit is refused before it reaches the engine, or None."""
        if self.is_draining:
            return grpc.StatusCode.UNAVAILABLE, "worker is draining"
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        if not 0 < len(admit.request_id) <= MAX_REQUEST_ID_CHARS:
            return invalid, f"request_id must be 1-{MAX_REQUEST_ID_CHARS} characters"
        if admit.request_id in session.request_ids:
            return invalid, "request id is already in use"
        if len(admit.prompt_token_ids) > self.max_model_len:
            return invalid, (f"prompt ({len(admit.prompt_token_ids)} tokens) exceeds the model's "
                             f"context of {self.max_model_len} tokens")
        if len(admit.conversation_id) > MAX_CONVERSATION_ID_CHARS:
            return invalid, f"conversation_id must be at most {MAX_CONVERSATION_ID_CHARS} characters"
        if len(admit.stop.stop_token_ids) > MAX_STOP_TOKEN_IDS:
            return invalid, f"at most {MAX_STOP_TOKEN_IDS} stop_token_ids"
        return None

    def _start_draining(self) -> None:
        """Tell the scheduler at once, so it stops routing here."""
        self.is_draining = True
        if self.session is not None:
            self.session.events.put_nowait(worker_pb2.SessionResponse(
                step=worker_pb2.StepEvent(is_draining=True)))

    def _refuse(self, session: Session, request_id: str, code: grpc.StatusCode, reason: str) -> None:
        change = worker_pb2.RequestStateChange(
            request_id=request_id, state=common_pb2.REQUEST_STATE_ABORTED, reason=reason,
            error_code=code.value[0])
        session.events.put_nowait(worker_pb2.SessionResponse(
            step=worker_pb2.StepEvent(state_changes=[change])))

    # ---- engine thread ----------------------------------------------------------------------
    def _admit_engine(self, engine: Engine, session: Session, admit: worker_pb2.AdmitCommand) -> None:
        try:
            engine.add_request(
                admit.request_id, list(admit.prompt_token_ids),
                sampling=convert.sampling_from_proto(admit.sampling),
                stop=convert.stop_from_proto(admit.stop), conversation_id=admit.conversation_id,
                client_priority=admit.priority)
        except (InvalidRequestError, ValueError) as exc:
            self.loop.call_soon_threadsafe(self._refuse_admitted, session, admit.request_id,
                                           grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # a bug, not a bad request: the id was free, undo the admit
            log.exception("admit failed", extra={"request_id": loggable(admit.request_id)})
            engine.abort(admit.request_id)
            self.loop.call_soon_threadsafe(
                self._refuse_admitted, session, admit.request_id, grpc.StatusCode.INTERNAL,
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
        event = convert.step_event(result, engine)
        event.is_draining = self.is_draining
        stats = worker_pb2.GetWorkerStatsResponse(
            worker_id=self.config.worker_id, capacity=event.capacity, swap=event.swap,
            num_running_requests=len(engine.queues.running),
            num_swapped_requests=len(engine.queues.parked),
            num_waiting_requests=len(engine.queues.waiting))
        self.loop.call_soon_threadsafe(self._deliver, event, stats)

    # ---- back on the asyncio loop ---------------------------------------------------------
    def _refuse_admitted(self, session: Session, request_id: str, code: grpc.StatusCode,
                         reason: str) -> None:
        session.request_ids.discard(request_id)
        self._refuse(session, request_id, code, reason)

    def _report_failed(self, request_ids: tuple[str, ...], reason: str) -> None:
        """The engine aborted these requests after a failed step: tell their scheduler, with
        INTERNAL, before the engine's own ABORTED changes reach it."""
        session = self.session
        if session is None:
            return
        for request_id in request_ids:
            if request_id in session.request_ids:  # else it was not this scheduler's
                session.request_ids.discard(request_id)
                self._refuse(session, request_id, grpc.StatusCode.INTERNAL, reason)

    def _fail(self, exc: BaseException) -> None:
        """The engine is unrecoverable: end the session (the scheduler moves its requests) and
        raise `failed`, on which the server stops and the process exits non-zero."""
        self.failure = exc
        if self.session is not None:
            self.close_session(self.session, grpc.StatusCode.UNAVAILABLE, ENGINE_FAILED_MESSAGE)
        self.failed.set()

    def _deliver(self, event: worker_pb2.StepEvent, stats: worker_pb2.GetWorkerStatsResponse) -> None:
        self.latest_stats = stats
        if self.session is not None:
            self.session.events.put_nowait(worker_pb2.SessionResponse(step=event))
            for output in event.outputs:
                if output.finish_reason:
                    self.session.request_ids.discard(output.request_id)
        if self.kvstore is not None and (event.kv_published or event.kv_evicted_conversation_ids):
            task = self.loop.create_task(self._sync_kvstore(event))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

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
        """Stop admitting; let running requests finish for up to drain_timeout_s; abort the rest
        with reason "draining" so the scheduler can move them."""
        self._start_draining()
        deadline = self.loop.time() + self.config.drain_timeout_s
        while (self.session is not None and self.session.request_ids and self.failure is None
               and self.loop.time() < deadline):
            await asyncio.sleep(0.05)
        if self.session is not None:
            for request_id in list(self.session.request_ids):
                self._refuse(self.session, request_id, grpc.StatusCode.UNAVAILABLE, "draining")
            self.close_session(self.session)

    async def stop(self) -> None:
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
