"""SchedulerCore: the cluster's requests (counts, not tokens), the workers' and frontends'
sessions, the tick that applies policy.

The control plane: frontends submit requests and own their streams; workers stream tokens to
those frontends directly and tell the scheduler only per-step counts and state changes. The
scheduler's state can be rebuilt from what both report: a restarted scheduler adopts the
requests the workers hold (their hellos) as the frontends submit them again (their sessions).

Runs on one asyncio loop; nothing here is thread-safe and nothing needs to be.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

import grpc

from fastswitch.tenants import TenantRegistry, TenantState
from fastswitch.v1 import common_pb2, control_pb2, worker_pb2
from fastswitch_scheduler.config import SchedulerConfig
from fastswitch_scheduler.counters import TenantCounters
from fastswitch_scheduler.discovery import resolve_targets
from fastswitch_scheduler.frontend_sessions import FRONTEND_GRACE_S, FrontendSession
from fastswitch_scheduler.kv_lookup import KVLookup
from fastswitch_scheduler.placement import offers, room_of
from fastswitch_scheduler.policy import PolicyParams, WorkerPlan, choose, order_key, plan_worker
from fastswitch_scheduler.policy_vtc import KV_PRESSURE
from fastswitch_scheduler.priority_trace import IterationClock, PriorityTrace
from fastswitch_scheduler.request_table import RequestTable
from fastswitch_scheduler.requests import ClusterRequest, Failure, Phase
from fastswitch_scheduler.worker_events import Finish, read_step_event
from fastswitch_scheduler.worker_link import WorkerLink

log = logging.getLogger("fastswitch.scheduler")
# A request a frontend says some worker holds waits this long for that worker's hello before
# it is placed again; a request a worker holds that no frontend claims within this long is an
# orphan (its frontend died while no scheduler ran) and is aborted.
ADOPTION_GRACE_S = 10.0
RUNNING_STATES = (common_pb2.REQUEST_STATE_RUNNING, common_pb2.REQUEST_STATE_SWAPPING_IN,
                  common_pb2.REQUEST_STATE_WAITING)


class SchedulerCore:
    def __init__(self, config: SchedulerConfig, tenants: TenantRegistry) -> None:
        self.config = config
        self.tenants = tenants
        self.params = PolicyParams(
            config.policy, vtc_preempt_threshold=config.vtc_preempt_threshold,
            max_running=config.max_running_per_worker, kv_headroom_tokens=config.kv_headroom_tokens,
            kv_admit_headroom_tokens=max(config.kv_admit_headroom_tokens, config.kv_headroom_tokens),
            vtc_quantum=min(config.vtc_quantum, config.vtc_preempt_threshold),
            vtc_finish_guard_tokens=config.vtc_finish_guard_tokens)
        self.counters = TenantCounters(tenants, idle_grace_s=config.tenant_idle_grace_s)
        self.backlogged: set[str] = set()  # tenants with a request waiting at the last tick
        self.trace = PriorityTrace(pattern=config.trace_pattern,
                                   update_probability=config.trace_update_probability,
                                   num_levels=config.trace_num_levels, seed=config.trace_seed)
        self.links: dict[str, WorkerLink] = {}
        self.kv_lookup = KVLookup(config.kvstore_addr, config.security) if config.kvstore_addr else None
        self.requests = RequestTable()
        self.frontends: dict[str, FrontendSession] = {}
        self.frontend_lost_s: dict[str, float] = {}  # frontend id -> when its session ended
        # Requests workers hold that no frontend has submitted (yet) to this scheduler:
        # request id -> (worker id, what the worker reported, when).
        self.unclaimed: dict[str, tuple[str, worker_pb2.HeldRequest, float]] = {}
        self.num_ticks = 0
        self.trace_clock = IterationClock()  # the trace's priorities change per iteration
        # Preemptions this scheduler commanded, by reason (policy_vtc.FAIRNESS, KV_PRESSURE,
        # policy.PRIORITY), counted in _apply: /metrics. The workers' own (KV exhausted
        # between ticks) are in their swap stats.
        self.preemption_counts: collections.Counter[str] = collections.Counter()
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
        """Stops deciding; the requests stay with their workers and frontends for the next
        scheduler to adopt."""
        for task in self._tasks:
            task.cancel()
        for session in self.frontends.values():
            session.close()
        for link in self.links.values():
            await link.stop()
        if self.kv_lookup is not None:
            await self.kv_lookup.close()

    def ready_links(self) -> list[WorkerLink]:
        return [link for link in self.links.values() if link.is_ready]

    def routable_links(self) -> list[WorkerLink]:
        """Workers that take new requests (connected and not draining)."""
        return [link for link in self.ready_links() if not link.is_draining]

    def directory(self) -> control_pb2.WorkerDirectory:
        """The ready workers, as frontends need them (address, TLS name, model facts)."""
        return control_pb2.WorkerDirectory(workers=[
            control_pb2.WorkerEndpoint(worker_id=link.worker_id, address=link.address,
                                       server_name=link.server_name, hello=link.hello)
            for link in self.ready_links()])

    def _publish_directory(self) -> None:
        directory = self.directory()
        for session in self.frontends.values():
            session.send_directory(directory)

    # ---- frontends ------------------------------------------------------------------------
    def open_frontend(self, frontend_id: str) -> FrontendSession:
        """Mutates: a frontend's (new) session; a previous one of the same frontend ends."""
        old = self.frontends.pop(frontend_id, None)
        if old is not None:
            old.close()
        self.frontend_lost_s.pop(frontend_id, None)
        session = self.frontends[frontend_id] = FrontendSession(frontend_id)
        session.send_directory(self.directory())
        log.info("frontend connected", extra={"frontend": frontend_id})
        return session

    def close_frontend(self, session: FrontendSession) -> None:
        """Mutates: its requests wait FRONTEND_GRACE_S for it to come back (the tick)."""
        if self.frontends.get(session.frontend_id) is session:
            del self.frontends[session.frontend_id]
            self.frontend_lost_s[session.frontend_id] = time.monotonic()
            log.info("frontend disconnected", extra={"frontend": session.frontend_id})

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

    def submit(self, session: FrontendSession, submit: control_pb2.SubmitRequest) -> None:
        """Mutates: registers a frontend's request for the next tick; refusals go back as
        RequestEnd. A request submitted again (a new session) keeps its state, or is adopted
        from the worker that holds it."""
        known = self.requests.get(submit.request_id)
        if known is not None:
            if known.frontend_id == session.frontend_id and known.worker_id is not None:
                session.place(known.request_id, known.worker_id)
                session.flush()
            return
        tenant = self.tenants.tenants.get(submit.tenant)
        if tenant is None:
            session.end(submit.request_id, grpc.StatusCode.PERMISSION_DENIED,
                        "the frontend's tenant is not in the scheduler's tenants file")
            return
        if self.requests.find(tenant.name, submit.client_request_id) is not None:
            session.end(submit.request_id, grpc.StatusCode.ALREADY_EXISTS,
                        f"request {submit.client_request_id!r} is running")
            return
        is_resubmitted = bool(submit.worker_id) or submit.num_generated_tokens > 0
        if not is_resubmitted and (refusal := self.admission_refusal(tenant)) is not None:
            session.end(submit.request_id, grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
            return
        request = ClusterRequest(
            request_id=submit.request_id, client_request_id=submit.client_request_id,
            tenant=tenant, frontend_id=session.frontend_id,
            num_prompt_tokens=submit.num_prompt_tokens, max_tokens=submit.max_tokens,
            conversation_id=submit.conversation_id, priority=submit.priority,
            num_generated_tokens=submit.num_generated_tokens,
            is_prompt_charged=submit.num_generated_tokens > 0,
            claimed_worker_id=submit.worker_id)
        if not self.requests.has_tenant(tenant.name):
            active = [self.tenants.tenants[name] for name in self.requests.tenant_names()]
            self.counters.on_arrival(tenant, active)
        self.requests.add(request)
        unclaimed = self.unclaimed.pop(request.request_id, None)
        if unclaimed is not None:
            self._adopt(request, *unclaimed[:2])
        # Else the next tick places it (and admits it when it may run): one message per
        # frontend and per worker for all of a tick's new requests.

    def _adopt(self, request: ClusterRequest, worker_id: str, held: worker_pb2.HeldRequest) -> None:
        """Mutates: the request keeps running where it is (its worker reported it held)."""
        request.worker_id = worker_id
        request.claimed_worker_id = ""
        request.is_admitted = held.is_admitted
        request.num_generated_tokens = max(request.num_generated_tokens, held.num_generated_tokens)
        if held.is_admitted:
            request.is_prompt_charged = request.is_prompt_charged or held.num_generated_tokens > 0
            request.mark_phase(Phase.RUNNING if held.state in RUNNING_STATES else Phase.PREEMPTED)
        log.debug("request adopted", extra={"request_id": request.request_id, "worker": worker_id})

    async def _look_up_holders(self, requests: list[ClusterRequest]) -> None:
        """Mutates: each new conversation turn learns, once, which worker holds its KV (the
        kvstore; none on error). Concurrent lookups: one slow answer delays the tick once."""
        pending = [r for r in requests if r.conversation_id and not r.is_holder_looked_up]
        for request in pending:
            request.is_holder_looked_up = True
        if not pending or self.kv_lookup is None:
            return
        holders = await asyncio.gather(*(self.kv_lookup.worker_of(r.conversation_id) for r in pending))
        for request, holder in zip(pending, holders, strict=True):
            request.kv_holder_id = holder

    def cancel(self, request: ClusterRequest, failure: Failure | None = None) -> None:
        """Mutates: the client went away or asked to stop; the worker frees the KV. With a
        failure, the owning frontend ends the client's stream with it."""
        if request.phase is Phase.FINISHED:
            return
        self._send(request, worker_pb2.SessionRequest(abort=worker_pb2.AbortCommand(request_id=request.request_id)))
        self.finish(request, failure)

    def finish(self, request: ClusterRequest, failure: Failure | None = None) -> None:
        """Mutates: the request leaves the table; a failure goes to its frontend."""
        if request.phase is Phase.FINISHED:
            return
        request.mark_phase(Phase.FINISHED)
        self.requests.remove(request)
        if not self.requests.has_tenant(request.tenant.name):
            self.counters.on_idle(request.tenant)
        self.trace.forget(request.trace_key)
        if failure is not None and (session := self.frontends.get(request.frontend_id)) is not None:
            session.end(request.request_id, failure.code, failure.message)

    def find(self, tenant: TenantState, client_request_id: str) -> ClusterRequest | None:
        return self.requests.find(tenant.name, client_request_id)

    def _send(self, request: ClusterRequest, msg: worker_pb2.SessionRequest) -> None:
        link = self._link_of(request.worker_id)
        if link is not None:
            link.send(msg)

    def _link_of(self, worker_id: str | None) -> WorkerLink | None:
        return next((link for link in self.links.values() if link.worker_id == worker_id), None)

    # ---- worker callbacks -----------------------------------------------------------------
    def _on_ready(self, link: WorkerLink) -> None:
        """A worker's session opened: take over what it holds."""
        now_s = time.monotonic()
        for held in link.hello.held:
            request = self.requests.get(held.request_id)
            if request is None:
                self.unclaimed[held.request_id] = (link.worker_id, held, now_s)
            elif request.worker_id is None and request.claimed_worker_id == link.worker_id:
                self._adopt(request, link.worker_id, held)
            elif request.worker_id != link.worker_id:
                # Placed elsewhere meanwhile (this worker was given up): free it here.
                link.send(worker_pb2.SessionRequest(abort=worker_pb2.AbortCommand(request_id=held.request_id)))
        held_ids = {held.request_id for held in link.hello.held}
        for request in self.requests.values():
            if request.claimed_worker_id == link.worker_id and request.request_id not in held_ids:
                request.claimed_worker_id = ""  # the worker lost it: place it again
            elif request.worker_id == link.worker_id and request.request_id not in held_ids:
                self.move_or_fail(request, f"worker {link.worker_id} restarted")
        self.ready.set()
        self._publish_directory()

    def _on_event(self, link: WorkerLink, event: worker_pb2.StepEvent) -> None:
        self.trace_clock.add(link.worker_id, event.num_compute_steps)
        for outcome in read_step_event(event, link.worker_id, self.requests, self.counters):
            if isinstance(outcome, Finish) and outcome.failure is not None:
                # Refused or failed there: the abort also clears an admit the worker holds for
                # a stage it refused (they travel apart).
                self.cancel(outcome.request, outcome.failure)
            elif isinstance(outcome, Finish):
                self.finish(outcome.request)
            else:
                self.move_or_fail(outcome.request, outcome.reason)

    async def _on_lost(self, link: WorkerLink) -> None:
        """A worker disappeared: move its requests elsewhere (recomputing), or fail them."""
        for request in [r for r in self.requests.values() if r.worker_id == link.worker_id]:
            self.move_or_fail(request, f"worker {link.worker_id} is unavailable")
        if not self.ready_links():
            self.ready.clear()
        self._publish_directory()

    def move_or_fail(self, request: ClusterRequest, reason: str) -> None:
        others = [link for link in self.routable_links() if link.worker_id != request.worker_id]
        if not others:
            self.finish(request, Failure(grpc.StatusCode.UNAVAILABLE, reason))
            return
        request.worker_id = None
        request.unrouted_since_s = time.monotonic()  # the tick's deadline applies again
        request.is_admitted = False
        request.host_tokens = 0  # recomputed where it goes: nothing on that host
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
        """Mutates: settles what restarts left (claims, orphans, lost frontends), moves
        requests off lost workers, fails the unroutable, then on every worker turns the
        policy's choice — among its own requests and the unplaced ones it may take
        (placement.py) — into one batch of admit / resume / preempt commands. One pass over
        the requests after the (once per request) kvstore lookups."""
        self.num_ticks += 1
        self.trace_clock.tick()
        await self._look_up_holders([r for r in self.requests.values() if r.worker_id is None])
        now_s = time.monotonic()
        self._expire_unclaimed(now_s)
        self._drop_lost_frontends(now_s)
        ready = {link.worker_id for link in self.ready_links()}
        routable = {link.worker_id: link for link in self.routable_links()}
        by_worker: dict[str, list[ClusterRequest]] = {worker_id: [] for worker_id in ready}
        pool: list[ClusterRequest] = []
        backlogged: set[str] = set()  # tenants with a request waiting (queued or preempted)
        limit_s = self.config.unroutable_timeout_s
        for request in self.requests.values():
            if request.worker_id is not None and request.worker_id not in ready:
                # A safety net under the loss callbacks: however it got there.
                self.move_or_fail(request, f"worker {request.worker_id} is unavailable")
            if request.phase is Phase.FINISHED:
                continue
            if request.phase is not Phase.RUNNING:
                backlogged.add(request.tenant.name)
            if request.worker_id is not None:
                by_worker[request.worker_id].append(request)
                continue
            if routable:
                # Waiting for room is not being unroutable: the deadline counts only while
                # no worker takes requests at all.
                request.unrouted_since_s = now_s
            elif now_s - request.unrouted_since_s > limit_s:
                # Whether no worker ever connected, every one was lost, or the one it was
                # moved to died before the move was noticed.
                self.finish(request, Failure(grpc.StatusCode.UNAVAILABLE,
                                             f"no worker could take the request within {limit_s:g} s"))
                continue
            if request.claimed_worker_id and now_s - request.arrival_s > ADOPTION_GRACE_S:
                request.claimed_worker_id = ""  # no worker confirmed it: place it again
            if not request.claimed_worker_id:  # else placed by a later tick, once settled
                pool.append(request)
        self.counters.cap_credit(backlogged - self.backlogged, backlogged & self.backlogged,
                                 self.params.vtc_preempt_threshold)
        self.backlogged = backlogged
        pool = self._place_oversized(pool, routable)
        key = self._order_key()
        headroom = self.params.kv_admit_headroom_tokens  # room to start a request in
        rooms = {worker_id: room_of(worker_id, link.capacity_tokens, by_worker[worker_id], headroom)
                 for worker_id, link in routable.items()}
        order, offered = offers(pool, rooms, max_running=self.params.max_running,
                                headroom_tokens=headroom, key=key)
        order += [worker_id for worker_id in ready if worker_id not in rooms]  # draining
        taken: set[str] = set()
        for worker_id in order:
            link = self._link_of(worker_id)
            if link is None:
                continue
            extra = [r for r in offered.get(worker_id, ()) if r.request_id not in taken]
            placed = self._decide(link, by_worker[worker_id], extra, key)
            taken.update(r.request_id for r in placed)
        for session in self.frontends.values():
            session.flush()

    def _place_oversized(self, pool: list[ClusterRequest],
                         routable: dict[str, WorkerLink]) -> list[ClusterRequest]:
        """Mutates: a request larger (prompt + max_tokens) than any worker's KV would never
        find room: it is placed on the largest worker at once, which refuses it with the
        reason (INVALID_ARGUMENT to the client). Returns the rest of the pool."""
        largest = max(routable.values(), key=lambda link: link.capacity_tokens, default=None)
        if largest is None or largest.capacity_tokens <= 0:
            return pool
        rest = []
        for request in pool:
            if request.num_prompt_tokens + request.max_tokens <= largest.capacity_tokens:
                rest.append(request)
                continue
            request.worker_id = largest.worker_id
            if (session := self.frontends.get(request.frontend_id)) is not None:
                session.place(request.request_id, largest.worker_id)
        return rest

    def _decide(self, link: WorkerLink, candidates: list[ClusterRequest],
                extra: list[ClusterRequest], key) -> list[ClusterRequest]:
        """Mutates: runs the policy on one worker (its requests and the unplaced `extra` it
        may take), places what it took from `extra` there and sends the plan. Returns the
        requests it placed."""
        if not extra:
            fits, all_run = self._fits_all(candidates, link.capacity_tokens)
            if fits and all_run:
                return []  # nothing any policy would change
            if fits:  # every request runs, whatever the order: no sort for the choice
                plan = plan_worker(candidates, candidates)
                chosen = sorted(candidates, key=key) if plan.to_resume else candidates
                self._apply(link, plan, chosen, {})
                return []
        choice = choose(candidates + extra, key=key, capacity_tokens=link.capacity_tokens,
                        params=self.params, prompt_cost=self.counters.prompt_cost)
        extra_ids = {r.request_id for r in extra}
        placed = [r for r in choice.chosen if r.request_id in extra_ids]
        for request in placed:  # the owning frontend stages it there (at the tick's flush)
            request.worker_id = link.worker_id
            request.host_tokens = 0
            if (session := self.frontends.get(request.frontend_id)) is not None:
                session.place(request.request_id, link.worker_id)
        plan = plan_worker(candidates + placed, choice.chosen)
        self._apply(link, plan, choice.chosen, choice.preempt_reasons)
        return placed

    def _fits_all(self, candidates: list[ClusterRequest], capacity_tokens: int) -> tuple[bool, bool]:
        """(every request of the worker fits at once, every one already runs). Below
        saturation both hold, or only new requests wait: the tick needs no policy order then."""
        if len(candidates) > self.params.max_running:
            return False, False
        headroom = self.params.kv_admit_headroom_tokens  # all of them fit as if each started now
        running = Phase.RUNNING
        need = 0
        all_run = True
        for request in candidates:  # kv_tokens_needed, inlined: the tick's hot loop
            all_run = all_run and request.phase is running
            generated = request.num_generated_tokens
            need += (request.num_prompt_tokens + generated
                     + min(request.max_tokens - generated, headroom))
        return need <= capacity_tokens, all_run

    def _order_key(self):
        trace_priorities = {}
        if self.params.name == "trace":
            requests = self.requests.values()
            by_key = self.trace.priorities_at([r.trace_key for r in requests],
                                              self.trace_clock.step)
            trace_priorities = {r.request_id: by_key[r.trace_key] for r in requests}
        return order_key(self.params, trace_priorities)

    def _expire_unclaimed(self, now_s: float) -> None:
        """Mutates: held requests no frontend claimed in time are aborted on their worker."""
        for request_id, (worker_id, _, since_s) in list(self.unclaimed.items()):
            if now_s - since_s > ADOPTION_GRACE_S:
                del self.unclaimed[request_id]
                link = self._link_of(worker_id)
                if link is not None:
                    link.send(worker_pb2.SessionRequest(abort=worker_pb2.AbortCommand(request_id=request_id)))

    def _drop_lost_frontends(self, now_s: float) -> None:
        """Mutates: a frontend gone FRONTEND_GRACE_S has lost its clients: its requests are
        cancelled (their workers free the KV)."""
        gone = {fid for fid, since_s in self.frontend_lost_s.items()
                if now_s - since_s > FRONTEND_GRACE_S}
        if not gone:
            return
        for request in self.requests.values():
            if request.frontend_id in gone:
                self.cancel(request)
        for frontend_id in gone:
            del self.frontend_lost_s[frontend_id]

    def _apply(self, link: WorkerLink, plan: WorkerPlan, chosen: list[ClusterRequest],
               preempt_reasons: dict[str, str]) -> None:
        """Mutates: sends the plan as one batch, charges admitted prompts, counts the
        preemptions by reason and records the phases the plan leads to."""
        if not (plan.to_preempt or plan.to_resume or plan.to_admit):
            return
        batch = worker_pb2.CommandBatch(
            preempt=[r.request_id for r in plan.to_preempt],
            resume=[r.request_id for r in plan.to_resume],
            admit=[r.request_id for r in plan.to_admit])
        link.send(worker_pb2.SessionRequest(batch=batch))
        for request in plan.to_preempt:
            self.preemption_counts[preempt_reasons.get(request.request_id, KV_PRESSURE)] += 1
        for request in plan.to_preempt:
            request.mark_phase(Phase.PREEMPTED)
        for request in plan.to_resume:
            request.mark_phase(Phase.RUNNING)
        for request in plan.to_admit:
            request.is_admitted = True
            self.counters.charge_admission(request)  # before the quantum's starting point
            request.mark_phase(Phase.RUNNING)
        if plan.to_preempt or plan.to_resume:
            # The worker's own preemption (KV exhausted) follows the policy's order: rank.
            # Sent when the policy preempts or resumes, not for every admit: a request the
            # worker has no rank for yet ranks lowest (the latest arrival goes first).
            ranks = {r.request_id: len(chosen) - i for i, r in enumerate(chosen)}
            link.send(worker_pb2.SessionRequest(
                update_priorities=worker_pb2.UpdatePrioritiesCommand(priorities=ranks)))
