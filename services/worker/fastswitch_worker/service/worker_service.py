"""The worker's logic between gRPC and the engine thread: sessions, commands, KV events.

Everything here runs on the asyncio loop except the `_on_*_engine` methods, which run on the
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

log = logging.getLogger("fastswitch.worker")


class Session:
    """One scheduler's stream: events queued for it, the requests it admitted."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[worker_pb2.SessionResponse] = asyncio.Queue()
        self.request_ids: set[str] = set()


class WorkerService:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.loop = asyncio.get_running_loop()
        self.engine_loop = EngineLoop(lambda: Engine(config.engine), self._on_step_engine)
        self.kvstore = (KVStoreClient(config.kvstore_addr, config.worker_id,
                                      config.advertise_address or config.listen, config.security)
                        if config.kvstore_addr else None)
        self.session: Session | None = None
        self.is_draining = False
        self.latest_stats = worker_pb2.GetWorkerStatsResponse(worker_id=config.worker_id)
        self._background: set[asyncio.Task] = set()

    async def start(self) -> bool:
        """Load the model (on the engine thread); True once the engine is ready."""
        self.engine_loop.start()
        while not (self.engine_loop.ready.is_set() or self.engine_loop.stopped.is_set()):
            await asyncio.sleep(0.02)
        if not self.engine_loop.ready.is_set():
            return False
        engine = self.engine_loop.engine
        self.latest_stats.capacity.CopyFrom(convert.capacity(engine))
        if self.kvstore is not None:
            await self.kvstore.register(engine.kv.host.num_blocks * engine.block_bytes)
        return True

    def hello(self) -> worker_pb2.WorkerHello:
        engine = self.engine_loop.engine
        mc = engine.model_config
        hello = worker_pb2.WorkerHello(
            worker_id=self.config.worker_id, model=self.config.engine.model,
            max_model_len=min(engine.max_model_len, engine.kv.layout.num_gpu_blocks * engine.block_size),
            # The engine thread's latest snapshot: reading live engine state from here races.
            capacity=self.latest_stats.capacity, vocab_size=mc.vocab_size,
            eos_token_ids=engine.tokenizer.eos_token_ids, mode=self.config.engine.mode.value)
        if engine.tokenizer.bos_token_id is not None:
            hello.bos_token_id = engine.tokenizer.bos_token_id
        return hello

    # ---- sessions -------------------------------------------------------------------------
    def open_session(self) -> Session:
        if self.session is not None:
            self.close_session(self.session)  # a newer scheduler connection wins
        self.session = Session()
        return self.session

    def close_session(self, session: Session) -> None:
        """The scheduler went away: its requests have no reader any more."""
        for request_id in session.request_ids:
            self.engine_loop.submit(lambda e, rid=request_id: e.abort(rid))
        session.request_ids.clear()
        if self.session is session:
            self.session = None

    def handle(self, session: Session, msg: worker_pb2.SessionRequest) -> None:
        kind = msg.WhichOneof("command")
        if kind == "admit":
            admit = msg.admit
            if self.is_draining:
                self._refuse(session, admit.request_id, grpc.StatusCode.UNAVAILABLE, "worker is draining")
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
            priorities = dict(msg.update_priorities.priorities)
            self.engine_loop.submit(lambda e: e.update_priorities(priorities))
        elif kind == "drain":
            self._start_draining()

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
                priority=admit.priority)
        except (InvalidRequestError, ValueError) as exc:
            self.loop.call_soon_threadsafe(
                self._refuse, session, admit.request_id, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def _on_step_engine(self, result: StepResult) -> None:
        engine = self.engine_loop.engine
        event = convert.step_event(result, engine)
        event.is_draining = self.is_draining
        stats = worker_pb2.GetWorkerStatsResponse(
            worker_id=self.config.worker_id, capacity=event.capacity, swap=event.swap,
            num_running_requests=len(engine.scheduler.running),
            num_swapped_requests=len(engine.scheduler.parked),
            num_waiting_requests=len(engine.scheduler.waiting))
        self.loop.call_soon_threadsafe(self._deliver, event, stats)

    # ---- back on the asyncio loop ---------------------------------------------------------
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
        while self.session is not None and self.session.request_ids and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.session is not None:
            for request_id in list(self.session.request_ids):
                self._refuse(self.session, request_id, grpc.StatusCode.UNAVAILABLE, "draining")
            self.close_session(self.session)

    async def stop(self) -> None:
        if self.engine_loop.ready.is_set():
            await asyncio.to_thread(self.engine_loop.stop)
        if self.kvstore is not None:
            await self.kvstore.close()


def _if_live(engine: Engine, request_id: str, action) -> None:
    request = engine.requests.get(request_id)
    if request is not None and not request.status.is_done:
        action(request_id)
