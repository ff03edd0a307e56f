from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FINISH_REASON_UNSPECIFIED: _ClassVar[FinishReason]
    FINISH_REASON_STOP: _ClassVar[FinishReason]
    FINISH_REASON_LENGTH: _ClassVar[FinishReason]
    FINISH_REASON_ABORTED: _ClassVar[FinishReason]

class RequestState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REQUEST_STATE_UNSPECIFIED: _ClassVar[RequestState]
    REQUEST_STATE_WAITING: _ClassVar[RequestState]
    REQUEST_STATE_RUNNING: _ClassVar[RequestState]
    REQUEST_STATE_SWAPPING_OUT: _ClassVar[RequestState]
    REQUEST_STATE_SWAPPED: _ClassVar[RequestState]
    REQUEST_STATE_SWAPPING_IN: _ClassVar[RequestState]
    REQUEST_STATE_FINISHED: _ClassVar[RequestState]
    REQUEST_STATE_ABORTED: _ClassVar[RequestState]
FINISH_REASON_UNSPECIFIED: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_ABORTED: FinishReason
REQUEST_STATE_UNSPECIFIED: RequestState
REQUEST_STATE_WAITING: RequestState
REQUEST_STATE_RUNNING: RequestState
REQUEST_STATE_SWAPPING_OUT: RequestState
REQUEST_STATE_SWAPPED: RequestState
REQUEST_STATE_SWAPPING_IN: RequestState
REQUEST_STATE_FINISHED: RequestState
REQUEST_STATE_ABORTED: RequestState

class SamplingParams(_message.Message):
    __slots__ = ("temperature", "top_k", "top_p", "seed", "logprobs")
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    temperature: float
    top_k: int
    top_p: float
    seed: int
    logprobs: bool
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ..., logprobs: _Optional[bool] = ...) -> None: ...

class StopConditions(_message.Message):
    __slots__ = ("max_tokens", "stop_token_ids", "ignore_eos")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    IGNORE_EOS_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    ignore_eos: bool
    def __init__(self, max_tokens: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., ignore_eos: _Optional[bool] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("num_prompt_tokens", "num_generated_tokens", "num_reused_prompt_tokens")
    NUM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_REUSED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    num_prompt_tokens: int
    num_generated_tokens: int
    num_reused_prompt_tokens: int
    def __init__(self, num_prompt_tokens: _Optional[int] = ..., num_generated_tokens: _Optional[int] = ..., num_reused_prompt_tokens: _Optional[int] = ...) -> None: ...

class RequestTiming(_message.Message):
    __slots__ = ("queue_ms", "ttft_ms", "e2e_ms", "num_preemptions", "swapped_ms", "placement_wait_ms", "admission_wait_ms", "engine_queue_ms", "running_ms", "swapping_out_ms", "swapped_out_ms", "swapping_in_ms")
    QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    SWAPPED_MS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    ADMISSION_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_QUEUE_MS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_MS_FIELD_NUMBER: _ClassVar[int]
    SWAPPING_OUT_MS_FIELD_NUMBER: _ClassVar[int]
    SWAPPED_OUT_MS_FIELD_NUMBER: _ClassVar[int]
    SWAPPING_IN_MS_FIELD_NUMBER: _ClassVar[int]
    queue_ms: float
    ttft_ms: float
    e2e_ms: float
    num_preemptions: int
    swapped_ms: float
    placement_wait_ms: float
    admission_wait_ms: float
    engine_queue_ms: float
    running_ms: float
    swapping_out_ms: float
    swapped_out_ms: float
    swapping_in_ms: float
    def __init__(self, queue_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., num_preemptions: _Optional[int] = ..., swapped_ms: _Optional[float] = ..., placement_wait_ms: _Optional[float] = ..., admission_wait_ms: _Optional[float] = ..., engine_queue_ms: _Optional[float] = ..., running_ms: _Optional[float] = ..., swapping_out_ms: _Optional[float] = ..., swapped_out_ms: _Optional[float] = ..., swapping_in_ms: _Optional[float] = ...) -> None: ...

class SwapStats(_message.Message):
    __slots__ = ("num_swap_outs", "num_swap_ins", "swap_out_bytes", "swap_in_bytes", "num_copies", "reused_bytes", "stall_ms", "copy_ms", "num_cancelled_swap_outs", "num_recomputes", "num_kv_exhausted_preemptions")
    NUM_SWAP_OUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_SWAP_INS_FIELD_NUMBER: _ClassVar[int]
    SWAP_OUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_IN_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_COPIES_FIELD_NUMBER: _ClassVar[int]
    REUSED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STALL_MS_FIELD_NUMBER: _ClassVar[int]
    COPY_MS_FIELD_NUMBER: _ClassVar[int]
    NUM_CANCELLED_SWAP_OUTS_FIELD_NUMBER: _ClassVar[int]
    NUM_RECOMPUTES_FIELD_NUMBER: _ClassVar[int]
    NUM_KV_EXHAUSTED_PREEMPTIONS_FIELD_NUMBER: _ClassVar[int]
    num_swap_outs: int
    num_swap_ins: int
    swap_out_bytes: int
    swap_in_bytes: int
    num_copies: int
    reused_bytes: int
    stall_ms: float
    copy_ms: float
    num_cancelled_swap_outs: int
    num_recomputes: int
    num_kv_exhausted_preemptions: int
    def __init__(self, num_swap_outs: _Optional[int] = ..., num_swap_ins: _Optional[int] = ..., swap_out_bytes: _Optional[int] = ..., swap_in_bytes: _Optional[int] = ..., num_copies: _Optional[int] = ..., reused_bytes: _Optional[int] = ..., stall_ms: _Optional[float] = ..., copy_ms: _Optional[float] = ..., num_cancelled_swap_outs: _Optional[int] = ..., num_recomputes: _Optional[int] = ..., num_kv_exhausted_preemptions: _Optional[int] = ...) -> None: ...

class KVCapacity(_message.Message):
    __slots__ = ("block_size", "num_gpu_blocks", "num_free_gpu_blocks", "num_host_blocks", "num_free_host_blocks", "kv_bytes_per_token", "mean_extents_per_request", "num_reserved_unused_gpu_blocks")
    BLOCK_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_GPU_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NUM_FREE_GPU_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NUM_HOST_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    NUM_FREE_HOST_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_PER_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MEAN_EXTENTS_PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    NUM_RESERVED_UNUSED_GPU_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    block_size: int
    num_gpu_blocks: int
    num_free_gpu_blocks: int
    num_host_blocks: int
    num_free_host_blocks: int
    kv_bytes_per_token: int
    mean_extents_per_request: float
    num_reserved_unused_gpu_blocks: int
    def __init__(self, block_size: _Optional[int] = ..., num_gpu_blocks: _Optional[int] = ..., num_free_gpu_blocks: _Optional[int] = ..., num_host_blocks: _Optional[int] = ..., num_free_host_blocks: _Optional[int] = ..., kv_bytes_per_token: _Optional[int] = ..., mean_extents_per_request: _Optional[float] = ..., num_reserved_unused_gpu_blocks: _Optional[int] = ...) -> None: ...
