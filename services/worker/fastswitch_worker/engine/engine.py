"""The engine loop: commands -> apply finished copies -> schedule -> start copies -> forward
-> emit.

Single-threaded API: every method must be called from one thread (the worker service runs the
loop on a dedicated thread and hands it commands through a queue). Copies run on the Swapper's
threads; the engine only waits for one where the data is needed now.

One request, from Admit to its swap copy and back:
  add_request()               BatchScheduler.add queues it in RequestQueues
  step(): schedule()          BatchScheduler batches it, or plans its swap (KVManager) and has
                              Switches make the transition (blocking copies: complete at once)
          launch()            Switches hands the copy to the SwapExecutor (Swapper's threads)
  a later step(): poll()      the SwapExecutor reports it finished (plain FinishedCopy values)
          apply_finished()    Switches applies what follows: status, queue, blocks, reuse
"""

from __future__ import annotations

import torch

from fastswitch.tokenizer import load_tokenizer
from fastswitch_worker.engine.config import EngineConfig
from fastswitch_worker.engine.errors import (
    EngineInconsistentError,
)
from fastswitch_worker.engine.kv_manager import KVLayout, KVManager, PublishedKV
from fastswitch_worker.engine.kv_pools import allocate_kv_pools
from fastswitch_worker.engine.loader import load_model, resolve_device, weights_dtype
from fastswitch_worker.engine.model_runner import ModelRunner
from fastswitch_worker.engine.outputs import (
    RequestOutput,
    StepResult,
    SwapCounters,
)
from fastswitch_worker.engine.request_commands import RequestCommands
from fastswitch_worker.engine.request_queues import RequestQueues
from fastswitch_worker.engine.scheduler import BatchScheduler, SchedulerLimits
from fastswitch_worker.engine.sequence import (
    Request,
    RequestStatus,
)
from fastswitch_worker.engine.step_report import StatusReporter, request_output
from fastswitch_worker.engine.swap_executor import SwapExecutor
from fastswitch_worker.engine.swapper import Swapper
from fastswitch_worker.engine.switches import Switches

IDLE_COPY_WAIT_S = 0.005


class Engine(RequestCommands):
    """One worker's engine: requests in, tokens and state changes out, one step at a time."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        torch.set_num_threads(config.compute_threads())  # process-wide by nature
        self.model, self.model_config = load_model(
            config.model, dtype=weights_dtype(config.dtype, config.model, self.device),
            device=self.device, load_format=config.load_format, seed=config.seed)
        self.dtype = self.model_config.torch_dtype  # the KV cache matches the weights
        self.tokenizer = load_tokenizer(config.model, self.model_config)
        self.max_model_len = config.max_model_len or self.model_config.max_position_embeddings
        self.block_size = config.block_size_for_mode
        pools = allocate_kv_pools(
            self.model_config, block_size=self.block_size, dtype=self.dtype, device=self.device,
            kv_cache_bytes=config.kv_cache_bytes, gpu_memory_fraction=config.gpu_memory_fraction,
            host_kv_bytes=config.host_kv_bytes)
        self.block_bytes = pools.block_bytes
        is_fast = config.is_fastswitch
        self.kv = KVManager(KVLayout(
            block_size=self.block_size, num_gpu_blocks=pools.num_gpu_blocks,
            num_host_blocks=pools.num_host_blocks, is_block_groups=is_fast,
            is_reuse=is_fast and config.kv_reuse,
            max_group_blocks=config.max_group_blocks))
        self.counters = SwapCounters()
        self.queues = RequestQueues()  # live requests by status (scheduler and switches)
        self.switches = Switches(self.kv, self.queues, self.counters,
                                 block_bytes=self.block_bytes)
        self.scheduler = BatchScheduler(self.kv, self.queues, self.switches, SchedulerLimits(
            max_num_batched_tokens=config.max_num_batched_tokens,
            max_num_seqs=config.max_num_seqs, is_sync_swaps=not is_fast,
            blocking_swap_in_max_blocks=config.blocking_swap_in_max_blocks,
            blocking_swap_in_max_batch=config.blocking_swap_in_max_batch))
        self.swapper = Swapper(pools.gpu_kv, pools.host_kv, is_async=is_fast,
                               is_per_layer_copies=not is_fast)
        self.copies = SwapExecutor(self.swapper, self.counters)
        self.runner = ModelRunner(self.model, pools.gpu_kv, self.block_size)
        # Every request until it is done, reported and no copy of it runs (queues hold only
        # the live ones).
        self.requests: dict[str, Request] = {}
        self._pending_outputs: list[RequestOutput] = []
        self._published: list[PublishedKV] = []  # reusable KV to announce at the next step
        self._status = StatusReporter()
        self._step = 0
        # The requests the current step computes, fixed once its batch and copies are set up;
        # None before that (a failure then may have touched any request).
        self._step_request_ids: tuple[str, ...] | None = None

    def _forget_sampling(self, request_id: str) -> None:
        self.runner.sampler.forget(request_id)

    # ---- the step -------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Mutates everything: one iteration of the engine loop."""
        self._step += 1
        self._step_request_ids = None
        stall_start_ms = self.counters.stall_ms
        self._apply_finished_copies(wait=False)
        output = self.scheduler.schedule()
        self._status.count_preemptions(output, self.counters)
        self.switches.launch(output, self.copies)
        self._step_request_ids = tuple(chunk.request.request_id for chunk in output.chunks)
        if not output.chunks:
            # Nothing to compute until a copy lands: wait for it rather than spin (idle
            # time, not a stall: there is nothing to overlap with).
            self.copies.wait_for_any(IDLE_COPY_WAIT_S)
        samples = self.runner.run(output.chunks) if output.chunks else {}
        outputs = self._pending_outputs
        self._pending_outputs = []
        for index, chunk in enumerate(output.chunks):
            request = chunk.request
            request.num_computed_tokens += chunk.num_new_tokens
            if index not in samples:
                continue
            token_id, logprob = samples[index]
            request.append_token(token_id, logprob, self.tokenizer.eos_token_ids)
            outputs.append(request_output(request, 1))
            if request.finish_reason is not None:
                self._finish(request)
        published, self._published = self._published, []
        evicted = self.kv.take_evicted_conversation_ids()
        return StepResult(self._step, tuple(outputs), self._status.changes(self.requests), tuple(published),
                          tuple(evicted), output.num_batched_tokens,
                          self.counters.stall_ms - stall_start_ms)

    def _apply_finished_copies(self, *, wait: bool) -> None:
        finished = self.copies.poll(wait=wait)
        self._published.extend(self.switches.apply_finished(finished, self.requests))

    def fail_step(self) -> tuple[str, ...]:
        """Mutates: after step() raised, aborts the requests that step was computing (every
        live request when it failed before its batch was set up: any of them may have been
        touched), frees their KV through the abort path and checks the allocators.

        Returns the ids of the step's requests, including any the step finished before it
        failed (their last tokens were lost with it). Raises EngineInconsistentError when the
        bookkeeping is broken and the engine must not step again.
        """
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
        self.runner.sampler.forget(request.request_id)
        self.switches.retire_or_release(request, self.copies)

    # ---- lifecycle ------------------------------------------------------------------------
    def drain_copies(self) -> None:
        """Mutates: waits for every in-flight copy and applies it."""
        self._apply_finished_copies(wait=True)

    def close(self) -> None:
        self.drain_copies()
        self.swapper.close()
