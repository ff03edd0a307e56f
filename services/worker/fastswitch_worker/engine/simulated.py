"""A worker engine without a model: the real request bookkeeping with modelled time.

`SimulatedEngine` is a drop-in for engine.Engine where the worker service uses it (the engine
loop, the worker service, convert): the same commands, the same StepResult, the same state
changes, because it runs the engine's own torch-free parts: RequestQueues, KVManager (block
groups, host pool, reuse), BatchScheduler (batching, preempt/resume, KV-exhaustion
preemption) and Switches (every state change of a swap). What it models instead of computing:

- a step that batches anything takes `simulated_step_ms` of wall time (plus the time it waited
  on blocking copies), slept, not spun: 64 simulated workers fit on two cores;
- every sampling chunk yields one token: printable ASCII, a function of the request id and the
  token's position (a request moved to another worker goes on with the same sequence); EOS
  after `simulated_answer_tokens` when set; stop tokens, ignore_eos and max_tokens as the
  engine applies them (Request.append_token);
- copies take bytes / `simulated_copy_gb_per_s` (simulated_copies.SimulatedCopies): a
  preempted request is SWAPPING_OUT for that long while the others keep decoding.

It imports no torch (tests/services/worker/test_simulated_engine.py checks): a simulated worker
process stays a few tens of MB. Engine.step and this step() must stay alike; the engine-parity
test runs both on the same commands.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from fastswitch.tokenizer import DEFAULT_BYTE_BOS_ID, DEFAULT_BYTE_EOS_ID, ByteTokenizer
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.errors import (
    EngineInconsistentError,
)
from fastswitch_worker.engine.kv_manager import KVLayout, KVManager, PublishedKV
from fastswitch_worker.engine.outputs import RequestOutput, StepResult, SwapCounters
from fastswitch_worker.engine.request_commands import RequestCommands
from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.scheduler import BatchScheduler, SchedulerLimits
from fastswitch_worker.engine.sequence import (
    Request,
    RequestStatus,
)
from fastswitch_worker.engine.simulated_config import SimulatedEngineConfig
from fastswitch_worker.engine.simulated_copies import Clock, SimulatedCopies, SystemClock
from fastswitch_worker.engine.step_report import StatusReporter, request_output
from fastswitch_worker.engine.switches import Switches

IDLE_COPY_WAIT_S = 0.005  # as engine.IDLE_COPY_WAIT_S
# Context of the simulated model when --max-model-len is not given (Llama-3-8B's).
MAX_POSITION_EMBEDDINGS = 8192
# Generated tokens: printable ASCII, so detokenized answers are visible text.
_FIRST_PRINTABLE, _NUM_PRINTABLE = 32, 95


@dataclass(frozen=True)
class SimulatedModel:
    """The model facts a worker announces (fastswitch.tokenizer.ModelSpecials)."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    max_position_embeddings: int


class SimulatedEngine(RequestCommands):
    """One simulated worker's engine: requests in, tokens and state changes out, one step at a
    time. Single-threaded like Engine: every method on the engine thread."""

    def __init__(self, config: EngineConfig, simulation: SimulatedEngineConfig, *,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.simulation = simulation
        self.clock = clock or SystemClock()
        has_specials = simulation.simulated_vocab_size > DEFAULT_BYTE_EOS_ID
        self.model_config = SimulatedModel(
            simulation.simulated_vocab_size,
            eos_token_ids=(DEFAULT_BYTE_EOS_ID,) if has_specials else (),
            bos_token_id=DEFAULT_BYTE_BOS_ID if has_specials else None,
            max_position_embeddings=MAX_POSITION_EMBEDDINGS)
        self.tokenizer = ByteTokenizer.for_model(self.model_config)
        self.max_model_len = config.max_model_len or MAX_POSITION_EMBEDDINGS
        self.block_size = config.block_size_for_mode
        self.block_bytes = simulation.simulated_kv_bytes_per_token * self.block_size
        is_fast = config.is_fastswitch
        self.kv = KVManager(KVLayout(
            block_size=self.block_size,
            num_gpu_blocks=simulation.simulated_kv_tokens // self.block_size,
            num_host_blocks=simulation.simulated_host_kv_tokens // self.block_size,
            is_block_groups=is_fast, is_reuse=is_fast and config.kv_reuse,
            max_group_blocks=config.max_group_blocks))
        if self.kv.layout.num_gpu_blocks == 0:
            raise ValueError(f"simulated_kv_tokens ({simulation.simulated_kv_tokens}) holds "
                             f"no block of {self.block_size} tokens")
        self.counters = SwapCounters()
        self.queues = RequestQueues()
        self.switches = Switches(self.kv, self.queues, self.counters, block_bytes=self.block_bytes)
        self.scheduler = BatchScheduler(self.kv, self.queues, self.switches, SchedulerLimits(
            max_num_batched_tokens=config.max_num_batched_tokens,
            max_num_seqs=config.max_num_seqs, is_sync_swaps=not is_fast,
            blocking_swap_in_max_blocks=config.blocking_swap_in_max_blocks,
            blocking_swap_in_max_batch=config.blocking_swap_in_max_batch))
        self.copies = SimulatedCopies(self.counters, self.clock, block_bytes=self.block_bytes,
                                      bytes_per_s=simulation.copy_bytes_per_s, is_async=is_fast)
        self.swapper = self.copies  # its `totals` are what Engine.swapper.totals are
        self._step_s = simulation.simulated_step_ms / 1e3
        # Every request until it is done, reported and no copy of it runs (as in Engine).
        self.requests: dict[str, Request] = {}
        self._pending_outputs: list[RequestOutput] = []
        self._published: list[PublishedKV] = []
        self._status = StatusReporter()
        self._step = 0
        self._step_request_ids: tuple[str, ...] | None = None

    # ---- the step -------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Mutates everything: one iteration, as Engine.step with the forward pass slept."""
        start_s = self.clock.now()
        self._step += 1
        self._step_request_ids = None
        stall_start_ms = self.counters.stall_ms
        self._published.extend(self.switches.apply_finished(self.copies.poll(wait=False),
                                                            self.requests))
        output = self.scheduler.schedule()
        self._status.count_preemptions(output, self.counters)
        self.switches.launch(output, self.copies)
        self._step_request_ids = tuple(chunk.request.request_id for chunk in output.chunks)
        if output.chunks:  # the forward pass: the step's time, after any blocking copies
            stalled_s = (self.counters.stall_ms - stall_start_ms) / 1e3
            self.clock.sleep(start_s + stalled_s + self._step_s - self.clock.now())
        elif self.copies.num_inflight:
            self.copies.wait_for_any(IDLE_COPY_WAIT_S)
        elif not self._pending_outputs:
            # Nothing computes, no copy runs: only a command changes that (e.g. a request that
            # waits for KV room). Engine.step returns at once and is called again; a simulated
            # worker must not spin while it waits.
            self.clock.sleep(IDLE_COPY_WAIT_S)
        outputs = self._pending_outputs
        self._pending_outputs = []
        for chunk in output.chunks:
            request = chunk.request
            is_sampling = chunk.is_sampling  # read before the chunk's tokens count as computed
            request.num_computed_tokens += chunk.num_new_tokens
            if not is_sampling:
                continue
            logprob = 0.0 if request.sampling.logprobs else None
            request.append_token(self._next_token(request), logprob, self.tokenizer.eos_token_ids)
            outputs.append(request_output(request, 1))
            if request.finish_reason is not None:
                self._finish(request)
        published, self._published = self._published, []
        evicted = self.kv.take_evicted_conversation_ids()
        return StepResult(self._step, tuple(outputs), self._status.changes(self.requests), tuple(published),
                          tuple(evicted), output.num_batched_tokens,
                          self.counters.stall_ms - stall_start_ms)

    def _next_token(self, request: Request) -> int:
        """What the simulated model generates next: EOS as the answer's n-th token when
        simulated_answer_tokens is n (a request ignoring EOS goes on past it), else printable
        ASCII that depends only on the request id and the position."""
        num_answer = self.simulation.simulated_answer_tokens
        eos_ids = self.tokenizer.eos_token_ids
        if num_answer and eos_ids and len(request.output_token_ids) + 1 == num_answer:
            return eos_ids[0]
        seed = zlib.crc32(request.request_id.encode())
        return _FIRST_PRINTABLE + (seed + request.num_tokens) % _NUM_PRINTABLE

    def fail_step(self) -> tuple[str, ...]:
        """Mutates: after step() raised, aborts that step's requests (every live one when it
        failed before its batch was set up) and checks the allocators, as Engine.fail_step.
        Raises EngineInconsistentError when the bookkeeping is broken."""
        failed = self._step_request_ids
        if failed is None:
            failed = tuple(rid for rid, r in self.requests.items() if not r.status.is_done)
        self._step_request_ids = None
        try:
            for request_id in failed:
                self.abort(request_id)
            self.kv.check_integrity()
        except Exception as exc:
            raise EngineInconsistentError(f"KV bookkeeping broken after a failed step: {exc!r}",
                                          failed) from exc
        return failed

    def _finish(self, request: Request) -> None:
        self.scheduler.remove(request, RequestStatus.FINISHED)
        self.switches.retire_or_release(request, self.copies)

    # ---- lifecycle ------------------------------------------------------------------------
    def drain_copies(self) -> None:
        """Mutates: waits for every copy in flight and applies it."""
        self._published.extend(self.switches.apply_finished(self.copies.poll(wait=True),
                                                            self.requests))

    def close(self) -> None:
        self.drain_copies()
