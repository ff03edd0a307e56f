"""Engine values -> fastswitch.v1 messages (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastswitch.v1 import common_pb2, worker_pb2
from fastswitch_worker.engine.kv_manager import PublishedKV, SwapDirection
from fastswitch_worker.engine.outputs import RequestOutput, StateChange, StepResult
from fastswitch_worker.engine.sequence import (
    FinishReason,
    RequestStatus,
    SamplingParams,
    StopConditions,
)

if TYPE_CHECKING:
    from fastswitch_worker.engine.engine import Engine

STATE = {
    RequestStatus.WAITING: common_pb2.REQUEST_STATE_WAITING,
    RequestStatus.RUNNING: common_pb2.REQUEST_STATE_RUNNING,
    RequestStatus.SWAPPING_OUT: common_pb2.REQUEST_STATE_SWAPPING_OUT,
    RequestStatus.SWAPPED: common_pb2.REQUEST_STATE_SWAPPED,
    RequestStatus.SWAPPING_IN: common_pb2.REQUEST_STATE_SWAPPING_IN,
    RequestStatus.FINISHED: common_pb2.REQUEST_STATE_FINISHED,
    RequestStatus.ABORTED: common_pb2.REQUEST_STATE_ABORTED,
}
FINISH = {
    None: common_pb2.FINISH_REASON_UNSPECIFIED,
    FinishReason.STOP: common_pb2.FINISH_REASON_STOP,
    FinishReason.LENGTH: common_pb2.FINISH_REASON_LENGTH,
    FinishReason.ABORTED: common_pb2.FINISH_REASON_ABORTED,
}


def sampling_from_proto(msg: common_pb2.SamplingParams) -> SamplingParams:
    return SamplingParams(temperature=msg.temperature, top_k=msg.top_k,
                          top_p=msg.top_p if 0 < msg.top_p <= 1 else 1.0,
                          seed=msg.seed if msg.HasField("seed") else None, logprobs=msg.logprobs)


def stop_from_proto(msg: common_pb2.StopConditions) -> StopConditions:
    return StopConditions(max_tokens=msg.max_tokens, stop_token_ids=tuple(msg.stop_token_ids),
                          ignore_eos=msg.ignore_eos)


def capacity(engine: Engine) -> common_pb2.KVCapacity:
    kv = engine.kv
    mean_extents, num_unused = kv.allocation_figures(list(engine.queues.running))
    return common_pb2.KVCapacity(
        mean_extents_per_request=mean_extents, num_reserved_unused_gpu_blocks=num_unused,
        block_size=engine.block_size, num_gpu_blocks=kv.gpu.num_blocks,
        num_free_gpu_blocks=kv.gpu.num_free_blocks, num_host_blocks=kv.host.num_blocks,
        num_free_host_blocks=kv.host.num_free_blocks,
        kv_bytes_per_token=engine.block_bytes // engine.block_size)


def swap_stats(engine: Engine) -> common_pb2.SwapStats:
    c = engine.counters
    out = engine.swapper.totals[SwapDirection.OUT]
    into = engine.swapper.totals[SwapDirection.IN]
    return common_pb2.SwapStats(
        num_swap_outs=c.num_swap_outs, num_swap_ins=c.num_swap_ins,
        swap_out_bytes=out.num_bytes, swap_in_bytes=into.num_bytes,
        num_copies=out.num_copies + into.num_copies, reused_bytes=c.reused_bytes,
        stall_ms=c.stall_ms, copy_ms=out.copy_ms + into.copy_ms,
        num_cancelled_swap_outs=c.num_cancelled_swap_outs, num_recomputes=c.num_recomputes,
        num_kv_exhausted_preemptions=c.num_kv_exhausted_preemptions)


def request_output(o: RequestOutput) -> worker_pb2.RequestOutput:
    return worker_pb2.RequestOutput(
        request_id=o.request_id, token_ids=o.new_token_ids, logprobs=o.new_logprobs,
        finish_reason=FINISH[o.finish_reason],
        usage=common_pb2.Usage(num_prompt_tokens=o.num_prompt_tokens,
                               num_generated_tokens=o.num_generated_tokens,
                               num_reused_prompt_tokens=o.num_reused_tokens))


def state_change(c: StateChange) -> worker_pb2.RequestStateChange:
    return worker_pb2.RequestStateChange(request_id=c.request_id, state=STATE[c.status],
                                         reason=c.reason)


def published(p: PublishedKV, block_bytes: int) -> worker_pb2.KVPublish:
    return worker_pb2.KVPublish(conversation_id=p.conversation_id, num_tokens=p.num_tokens,
                                prefix_hash=p.prefix_hash, num_bytes=p.num_blocks * block_bytes)


def progress(o: RequestOutput) -> worker_pb2.RequestProgress:
    return worker_pb2.RequestProgress(
        request_id=o.request_id, num_new_tokens=len(o.new_token_ids),
        finish_reason=FINISH[o.finish_reason], num_prompt_tokens=o.num_prompt_tokens,
        num_reused_prompt_tokens=o.num_reused_tokens)


@dataclass(frozen=True)
class StepReport:
    """One engine step, as the worker reports it: `event` for the scheduler (counts, state
    changes and figures, no tokens), `outputs` and `state_changes` for the frontends."""

    event: worker_pb2.StepEvent
    outputs: list[worker_pb2.RequestOutput]
    state_changes: list[worker_pb2.RequestStateChange]

    @classmethod
    def of(cls, result: StepResult, engine: Engine) -> StepReport:
        """Called on the engine thread (reads engine state consistently)."""
        state_changes = [state_change(c) for c in result.state_changes]
        event = worker_pb2.StepEvent(
            step=result.step, progress=[progress(o) for o in result.outputs],
            state_changes=state_changes, capacity=capacity(engine), swap=swap_stats(engine),
            kv_published=[published(p, engine.block_bytes) for p in result.published],
            kv_evicted_conversation_ids=result.evicted_conversation_ids,
            num_batched_tokens=result.num_batched_tokens, stall_ms=result.stall_ms,
            num_compute_steps=1 if result.num_batched_tokens else 0)
        return cls(event, [request_output(o) for o in result.outputs], state_changes)
