"""SchedulerCore: the cluster's requests, the workers' links, the tick that applies policy.

Runs on one asyncio loop; nothing here is thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass

import grpc

from fastswitch.tokenizer import IncrementalDetokenizer, Tokenizer, load_tokenizer
from fastswitch.v1 import common_pb2, scheduler_pb2, worker_pb2
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.discovery import resolve_targets
from fastswitch_scheduler.kv_lookup import KVLookup
from fastswitch_scheduler.policy import (
    PolicyParams,
    WorkerPlan,
    order_key,
    plan_worker,
    select_running,
)
from fastswitch_scheduler.priority_trace import PriorityTrace
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.tenants import TenantRegistry, TenantState
from fastswitch_scheduler.worker_events import Finish, read_step_event
from fastswitch_scheduler.worker_link import WorkerLink

log = logging.getLogger("fastswitch.scheduler")


class SchedulerCore:
    def __init__(self, config: SchedulerConfig, tenants: TenantRegistry) -> None:
        self.config = config
        self.tenants = tenants
        self.params = PolicyParams(config.policy, config.vtc_preempt_threshold,
                                   config.max_running_per_worker, config.kv_headroom_tokens)
        self.trace = PriorityTrace(pattern=config.trace_pattern,
                                   update_probability=config.trace_update_probability,
                                   num_levels=config.trace_num_levels, seed=config.trace_seed)
        self.links: dict[str, WorkerLink] = {}
        self.kv_lookup = KVLookup(config.kvstore_addr, config.security) if config.kvstore_addr else None
        self.requests = RequestTable()
        self.tokenizer: Tokenizer | None = None
        self.max_model_len = 0
        self.vocab_size = 0
        self.num_ticks = 0
        self._ids = itertools.count()
        self._tasks: list[asyncio.Task] = []
        self.ready = asyncio.Event()
        # Orders schedulers contending for a worker's session (a rolling update): the newer wins.
        self.epoch = time.time_ns()

    async def start(self) -> None:
        await self.discover()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_forever()),
                       loop.create_task(self._discover_forever())]

    async def discover(self) -> None:
        """Mutates: one link per address the worker targets resolve to now."""
        addresses = await resolve_targets(self.config.workers)
        for address in addresses.keys() - set(self.links):
            link = WorkerLink(address, self.config.security, server_name=addresses[address],
                              epoch=self.epoch, on_ready=self._on_ready, on_event=self._on_event,
                              on_lost=self._on_lost)
            self.links[address] = link
            link.start()
        for address in set(self.links) - addresses.keys():
            link = self.links.pop(address)
            await link.stop()
            if link.is_ready:
                link.is_ready = False
                await self._on_lost(link)

    async def _discover_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.discovery_interval_s)
            try:
                await self.discover()
            except Exception:
                log.exception("worker discovery failed")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for request in self.requests.values():
            self.finish(request, Failure(grpc.StatusCode.UNAVAILABLE, "scheduler is shutting down"))
        for link in self.links.values():
            await link.stop()
        if self.kv_lookup is not None:
            await self.kv_lookup.close()

    def ready_links(self) -> list[WorkerLink]:
        return [link for link in self.links.values() if link.is_ready]

    def routable_links(self) -> list[WorkerLink]:
        """Workers that take new requests (connected and not draining)."""
        return [link for link in self.ready_links() if not link.is_draining]

    # ---- requests -------------------------------------------------------------------------
    def admission_refusal(self, tenant: TenantState) -> str | None:
        """Why a new request of `tenant` would overload the cluster (RESOURCE_EXHAUSTED), or
        None when it may be queued."""
        if len(self.requests) >= self.config.max_queued_requests:
            return (f"the cluster holds {len(self.requests)} live requests, its limit "
                    "(--max-queued-requests); retry later")
        if self.requests.num_of(tenant.name) >= self.config.max_queued_per_tenant:
            return (f"tenant {tenant.name!r} has {self.requests.num_of(tenant.name)} live requests, "
                    "its limit (--max-queued-per-tenant); retry later")
        return None

    async def submit(self, request: ClusterRequest) -> None:
        """Mutates: registers the request and routes it. Caller validated it."""
        # The epoch keeps ids unique across scheduler restarts: a worker may still hold a
        # previous scheduler's request while it hands the session over.
        request.request_id = (f"{request.tenant.name}/{request.client_request_id}/"
                              f"{self.epoch:x}.{next(self._ids)}")
        if not self.requests.has_tenant(request.tenant.name):
            active = [self.tenants.tenants[name] for name in self.requests.tenant_names()]
            self.tenants.lift(request.tenant, active)
        request.detokenizer = IncrementalDetokenizer(self.tokenizer, prompt_token_ids=request.prompt_token_ids)
        self.requests.add(request)
        await self._route(request)

    async def _route(self, request: ClusterRequest) -> None:
        """Sticky: a conversation's next turn goes where its KV is; else the least loaded."""
        if not self.routable_links():
            return  # routed by the tick once a worker is ready
        holder = None
        if request.conversation_id and self.kv_lookup is not None:
            holder = await self.kv_lookup.worker_of(request.scoped_conversation_id)
        # After the lookup, look again: the request may have finished, or been routed by the
        # tick meanwhile (routing it twice would admit it on one worker while the table says
        # another); and a worker lost during the lookup must not get it (its loss handling has
        # run and would never move it again).
        links = self.routable_links()
        if request.phase is Phase.FINISHED or request.worker_id is not None or not links:
            return
        if holder is not None:
            for link in links:
                if link.worker_id == holder:
                    request.worker_id = link.worker_id
                    return
        load = {link.worker_id: 0 for link in links}
        for other in self.requests.values():
            if other.worker_id in load:
                load[other.worker_id] += other.num_tokens
        request.worker_id = min(links, key=lambda link: load[link.worker_id] / max(1, link.capacity_tokens)).worker_id

    def cancel(self, request: ClusterRequest) -> None:
        """Mutates: the client went away or asked to stop; the worker frees the KV."""
        if request.phase is Phase.FINISHED:
            return
        self._send(request, worker_pb2.SessionRequest(abort=worker_pb2.AbortCommand(request_id=request.request_id)))
        self.finish(request, Failure(grpc.StatusCode.CANCELLED, "cancelled"))

    def finish(self, request: ClusterRequest, final: scheduler_pb2.GenerateResponse | Failure) -> None:
        """Mutates: ends the request's stream with `final`; a finished request stays finished."""
        if request.phase is Phase.FINISHED:
            return
        request.mark_phase(Phase.FINISHED)
        self.requests.remove(request)
        self.trace.forget(request.trace_key)
        request.responses.put_nowait(final)

    def find(self, tenant: TenantState, client_request_id: str) -> ClusterRequest | None:
        return self.requests.find(tenant.name, client_request_id)

    def _send(self, request: ClusterRequest, msg: worker_pb2.SessionRequest) -> None:
        link = self._link_of(request.worker_id)
        if link is not None and request.is_admitted:
            link.send(msg)

    def _link_of(self, worker_id: str | None) -> WorkerLink | None:
        return next((link for link in self.links.values() if link.worker_id == worker_id), None)

    # ---- worker callbacks -----------------------------------------------------------------
    def _on_ready(self, link: WorkerLink) -> None:
        hello = link.hello
        if self.tokenizer is None:
            specials = _Specials(hello.vocab_size, tuple(hello.eos_token_ids),
                                 hello.bos_token_id if hello.HasField("bos_token_id") else None)
            self.tokenizer = load_tokenizer(self.config.model, specials)
            self.vocab_size = hello.vocab_size
        lens = [link.hello.max_model_len for link in self.ready_links()]
        self.max_model_len = min(lens) if lens else hello.max_model_len
        self.ready.set()

    def _on_event(self, link: WorkerLink, event: worker_pb2.StepEvent) -> None:
        for outcome in read_step_event(event, link.worker_id, self.requests, self.tenants):
            if isinstance(outcome, Finish):
                self.finish(outcome.request, outcome.final)
            else:
                self.move_or_fail(outcome.request, outcome.reason)

    async def _on_lost(self, link: WorkerLink) -> None:
        """A worker disappeared: move its requests elsewhere (recomputing), or fail them."""
        for request in [r for r in self.requests.values() if r.worker_id == link.worker_id]:
            self.move_or_fail(request, f"worker {link.worker_id} is unavailable")
        if not self.ready_links():
            self.ready.clear()

    def move_or_fail(self, request: ClusterRequest, reason: str) -> None:
        others = [link for link in self.routable_links() if link.worker_id != request.worker_id]
        if not others:
            self.finish(request, Failure(grpc.StatusCode.UNAVAILABLE, reason))
            return
        request.worker_id = None
        request.unrouted_since_s = time.monotonic()  # the tick's deadline applies again
        request.is_admitted = False
        request.mark_phase(Phase.QUEUED)

    # ---- the tick -------------------------------------------------------------------------
    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_ms / 1e3)
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")

    async def tick(self) -> None:
        """Mutates: routes unrouted requests, then on every worker turns the policy's choice
        into admit / resume / preempt commands."""
        self.num_ticks += 1
        self._move_off_lost_links()
        for request in [r for r in self.requests.values() if r.worker_id is None]:
            await self._route(request)
        self._fail_unroutable(time.monotonic())
        trace_priorities = {}
        if self.params.name == "trace":
            by_key = self.trace.priorities_at([r.trace_key for r in self.requests.values()],
                                              self.num_ticks)
            trace_priorities = {r.request_id: by_key[r.trace_key] for r in self.requests.values()}
        key = order_key(self.params, trace_priorities)
        for link in self.ready_links():
            candidates = [r for r in self.requests.values() if r.worker_id == link.worker_id]
            chosen = select_running(candidates, key=key, capacity_tokens=link.capacity_tokens,
                                    params=self.params)
            self._apply(link, plan_worker(candidates, chosen), chosen)

    def _move_off_lost_links(self) -> None:
        """Mutates: a safety net under the loss callbacks — a request on a worker whose link is
        not up is moved (or failed), however it got there."""
        ready = {link.worker_id for link in self.ready_links()}
        for request in self.requests.values():
            if request.worker_id is not None and request.worker_id not in ready:
                self.move_or_fail(request, f"worker {request.worker_id} is unavailable")

    def _fail_unroutable(self, now_s: float) -> None:
        """Mutates: a request no worker has taken for unroutable_timeout_s fails with
        UNAVAILABLE — whether no worker ever connected, every one was lost, or the one it was
        moved to died before the move was noticed."""
        limit_s = self.config.unroutable_timeout_s
        for request in self.requests.values():
            if request.worker_id is None and now_s - request.unrouted_since_s > limit_s:
                self.finish(request, Failure(grpc.StatusCode.UNAVAILABLE,
                                             f"no worker could take the request within {limit_s:g} s"))

    def _apply(self, link: WorkerLink, plan: WorkerPlan, chosen: list[ClusterRequest]) -> None:
        """Mutates: sends the plan's commands and records the phases they lead to."""
        for request in plan.to_preempt:
            link.send(worker_pb2.SessionRequest(preempt=worker_pb2.PreemptCommand(request_id=request.request_id)))
            request.mark_phase(Phase.PREEMPTED)
        for request in plan.to_resume:
            link.send(worker_pb2.SessionRequest(resume=worker_pb2.ResumeCommand(request_id=request.request_id)))
            request.mark_phase(Phase.RUNNING)
        for request in plan.to_admit:
            link.send(worker_pb2.SessionRequest(admit=self._admit_command(request)))
            request.is_admitted = True
            request.mark_phase(Phase.RUNNING)
        if plan.to_preempt or plan.to_resume or plan.to_admit:
            # The worker's own preemption (KV exhausted) follows the policy's order: rank.
            ranks = {r.request_id: len(chosen) - i for i, r in enumerate(chosen)}
            link.send(worker_pb2.SessionRequest(
                update_priorities=worker_pb2.UpdatePrioritiesCommand(priorities=ranks)))

    def _admit_command(self, request: ClusterRequest) -> worker_pb2.AdmitCommand:
        stop = common_pb2.StopConditions()
        stop.CopyFrom(request.stop)
        stop.max_tokens = request.num_remaining_tokens
        return worker_pb2.AdmitCommand(
            request_id=request.request_id, prompt_token_ids=request.admit_prompt(),
            sampling=request.sampling, stop=stop, conversation_id=request.scoped_conversation_id,
            priority=request.priority)


@dataclass(frozen=True)
class _Specials:
    """The model facts a worker announces, as the tokenizer wants them."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
