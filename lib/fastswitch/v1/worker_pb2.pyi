from fastswitch.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SessionRequest(_message.Message):
    __slots__ = ("admit", "preempt", "resume", "abort", "update_priorities", "drain", "batch")
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    admit: AdmitCommand
    preempt: PreemptCommand
    resume: ResumeCommand
    abort: AbortCommand
    update_priorities: UpdatePrioritiesCommand
    drain: DrainCommand
    batch: CommandBatch
    def __init__(self, admit: _Optional[_Union[AdmitCommand, _Mapping]] = ..., preempt: _Optional[_Union[PreemptCommand, _Mapping]] = ..., resume: _Optional[_Union[ResumeCommand, _Mapping]] = ..., abort: _Optional[_Union[AbortCommand, _Mapping]] = ..., update_priorities: _Optional[_Union[UpdatePrioritiesCommand, _Mapping]] = ..., drain: _Optional[_Union[DrainCommand, _Mapping]] = ..., batch: _Optional[_Union[CommandBatch, _Mapping]] = ...) -> None: ...

class CommandBatch(_message.Message):
    __slots__ = ("abort", "preempt", "resume", "admit")
    ABORT_FIELD_NUMBER: _ClassVar[int]
    PREEMPT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    abort: _containers.RepeatedScalarFieldContainer[str]
    preempt: _containers.RepeatedScalarFieldContainer[str]
    resume: _containers.RepeatedScalarFieldContainer[str]
    admit: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, abort: _Optional[_Iterable[str]] = ..., preempt: _Optional[_Iterable[str]] = ..., resume: _Optional[_Iterable[str]] = ..., admit: _Optional[_Iterable[str]] = ...) -> None: ...

class AdmitCommand(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class PreemptCommand(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ResumeCommand(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class AbortCommand(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class UpdatePrioritiesCommand(_message.Message):
    __slots__ = ("priorities",)
    class PrioritiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    priorities: _containers.ScalarMap[str, int]
    def __init__(self, priorities: _Optional[_Mapping[str, int]] = ...) -> None: ...

class DrainCommand(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("hello", "step")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    hello: WorkerHello
    step: StepEvent
    def __init__(self, hello: _Optional[_Union[WorkerHello, _Mapping]] = ..., step: _Optional[_Union[StepEvent, _Mapping]] = ...) -> None: ...

class WorkerHello(_message.Message):
    __slots__ = ("worker_id", "model", "max_model_len", "capacity", "vocab_size", "eos_token_ids", "bos_token_id", "mode", "held")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MAX_MODEL_LEN_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    BOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    model: str
    max_model_len: int
    capacity: _common_pb2.KVCapacity
    vocab_size: int
    eos_token_ids: _containers.RepeatedScalarFieldContainer[int]
    bos_token_id: int
    mode: str
    held: _containers.RepeatedCompositeFieldContainer[HeldRequest]
    def __init__(self, worker_id: _Optional[str] = ..., model: _Optional[str] = ..., max_model_len: _Optional[int] = ..., capacity: _Optional[_Union[_common_pb2.KVCapacity, _Mapping]] = ..., vocab_size: _Optional[int] = ..., eos_token_ids: _Optional[_Iterable[int]] = ..., bos_token_id: _Optional[int] = ..., mode: _Optional[str] = ..., held: _Optional[_Iterable[_Union[HeldRequest, _Mapping]]] = ...) -> None: ...

class HeldRequest(_message.Message):
    __slots__ = ("request_id", "is_admitted", "state", "num_generated_tokens", "frontend_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    IS_ADMITTED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    is_admitted: bool
    state: _common_pb2.RequestState
    num_generated_tokens: int
    frontend_id: str
    def __init__(self, request_id: _Optional[str] = ..., is_admitted: _Optional[bool] = ..., state: _Optional[_Union[_common_pb2.RequestState, str]] = ..., num_generated_tokens: _Optional[int] = ..., frontend_id: _Optional[str] = ...) -> None: ...

class StreamRequest(_message.Message):
    __slots__ = ("hello", "stage", "cancel")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    hello: StreamHello
    stage: StageCommand
    cancel: AbortCommand
    def __init__(self, hello: _Optional[_Union[StreamHello, _Mapping]] = ..., stage: _Optional[_Union[StageCommand, _Mapping]] = ..., cancel: _Optional[_Union[AbortCommand, _Mapping]] = ...) -> None: ...

class StreamHello(_message.Message):
    __slots__ = ("frontend_id",)
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    frontend_id: str
    def __init__(self, frontend_id: _Optional[str] = ...) -> None: ...

class StageCommand(_message.Message):
    __slots__ = ("request_id", "prompt_token_ids", "sampling", "stop", "conversation_id", "priority")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    sampling: _common_pb2.SamplingParams
    stop: _common_pb2.StopConditions
    conversation_id: str
    priority: int
    def __init__(self, request_id: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[_common_pb2.SamplingParams, _Mapping]] = ..., stop: _Optional[_Union[_common_pb2.StopConditions, _Mapping]] = ..., conversation_id: _Optional[str] = ..., priority: _Optional[int] = ...) -> None: ...

class StreamResponse(_message.Message):
    __slots__ = ("step", "outputs", "state_changes")
    STEP_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    step: int
    outputs: _containers.RepeatedCompositeFieldContainer[RequestOutput]
    state_changes: _containers.RepeatedCompositeFieldContainer[RequestStateChange]
    def __init__(self, step: _Optional[int] = ..., outputs: _Optional[_Iterable[_Union[RequestOutput, _Mapping]]] = ..., state_changes: _Optional[_Iterable[_Union[RequestStateChange, _Mapping]]] = ...) -> None: ...

class StepEvent(_message.Message):
    __slots__ = ("step", "state_changes", "capacity", "swap", "kv_published", "kv_evicted_conversation_ids", "num_batched_tokens", "stall_ms", "is_draining", "progress", "num_compute_steps")
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    KV_PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    KV_EVICTED_CONVERSATION_IDS_FIELD_NUMBER: _ClassVar[int]
    NUM_BATCHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STALL_MS_FIELD_NUMBER: _ClassVar[int]
    IS_DRAINING_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    NUM_COMPUTE_STEPS_FIELD_NUMBER: _ClassVar[int]
    step: int
    state_changes: _containers.RepeatedCompositeFieldContainer[RequestStateChange]
    capacity: _common_pb2.KVCapacity
    swap: _common_pb2.SwapStats
    kv_published: _containers.RepeatedCompositeFieldContainer[KVPublish]
    kv_evicted_conversation_ids: _containers.RepeatedScalarFieldContainer[str]
    num_batched_tokens: int
    stall_ms: float
    is_draining: bool
    progress: _containers.RepeatedCompositeFieldContainer[RequestProgress]
    num_compute_steps: int
    def __init__(self, step: _Optional[int] = ..., state_changes: _Optional[_Iterable[_Union[RequestStateChange, _Mapping]]] = ..., capacity: _Optional[_Union[_common_pb2.KVCapacity, _Mapping]] = ..., swap: _Optional[_Union[_common_pb2.SwapStats, _Mapping]] = ..., kv_published: _Optional[_Iterable[_Union[KVPublish, _Mapping]]] = ..., kv_evicted_conversation_ids: _Optional[_Iterable[str]] = ..., num_batched_tokens: _Optional[int] = ..., stall_ms: _Optional[float] = ..., is_draining: _Optional[bool] = ..., progress: _Optional[_Iterable[_Union[RequestProgress, _Mapping]]] = ..., num_compute_steps: _Optional[int] = ...) -> None: ...

class RequestProgress(_message.Message):
    __slots__ = ("request_id", "num_new_tokens", "finish_reason", "num_prompt_tokens", "num_reused_prompt_tokens")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    NUM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_REUSED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    num_new_tokens: int
    finish_reason: _common_pb2.FinishReason
    num_prompt_tokens: int
    num_reused_prompt_tokens: int
    def __init__(self, request_id: _Optional[str] = ..., num_new_tokens: _Optional[int] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., num_prompt_tokens: _Optional[int] = ..., num_reused_prompt_tokens: _Optional[int] = ...) -> None: ...

class RequestOutput(_message.Message):
    __slots__ = ("request_id", "token_ids", "logprobs", "finish_reason", "usage")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    logprobs: _containers.RepeatedScalarFieldContainer[float]
    finish_reason: _common_pb2.FinishReason
    usage: _common_pb2.Usage
    def __init__(self, request_id: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[float]] = ..., finish_reason: _Optional[_Union[_common_pb2.FinishReason, str]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class RequestStateChange(_message.Message):
    __slots__ = ("request_id", "state", "reason", "error_code")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    state: _common_pb2.RequestState
    reason: str
    error_code: int
    def __init__(self, request_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.RequestState, str]] = ..., reason: _Optional[str] = ..., error_code: _Optional[int] = ...) -> None: ...

class KVPublish(_message.Message):
    __slots__ = ("conversation_id", "num_tokens", "prefix_hash", "num_bytes")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_HASH_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    num_tokens: int
    prefix_hash: str
    num_bytes: int
    def __init__(self, conversation_id: _Optional[str] = ..., num_tokens: _Optional[int] = ..., prefix_hash: _Optional[str] = ..., num_bytes: _Optional[int] = ...) -> None: ...

class GetWorkerStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWorkerStatsResponse(_message.Message):
    __slots__ = ("worker_id", "capacity", "swap", "num_running_requests", "num_swapped_requests", "num_waiting_requests")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    NUM_RUNNING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NUM_SWAPPED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    NUM_WAITING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    capacity: _common_pb2.KVCapacity
    swap: _common_pb2.SwapStats
    num_running_requests: int
    num_swapped_requests: int
    num_waiting_requests: int
    def __init__(self, worker_id: _Optional[str] = ..., capacity: _Optional[_Union[_common_pb2.KVCapacity, _Mapping]] = ..., swap: _Optional[_Union[_common_pb2.SwapStats, _Mapping]] = ..., num_running_requests: _Optional[int] = ..., num_swapped_requests: _Optional[int] = ..., num_waiting_requests: _Optional[int] = ...) -> None: ...
