from fastswitch.v1 import scheduler_pb2 as _scheduler_pb2
from fastswitch.v1 import worker_pb2 as _worker_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrontendSessionRequest(_message.Message):
    __slots__ = ("hello", "submit", "cancel")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    hello: FrontendHello
    submit: SubmitRequest
    cancel: _worker_pb2.AbortCommand
    def __init__(self, hello: _Optional[_Union[FrontendHello, _Mapping]] = ..., submit: _Optional[_Union[SubmitRequest, _Mapping]] = ..., cancel: _Optional[_Union[_worker_pb2.AbortCommand, _Mapping]] = ...) -> None: ...

class FrontendHello(_message.Message):
    __slots__ = ("frontend_id",)
    FRONTEND_ID_FIELD_NUMBER: _ClassVar[int]
    frontend_id: str
    def __init__(self, frontend_id: _Optional[str] = ...) -> None: ...

class SubmitRequest(_message.Message):
    __slots__ = ("request_id", "client_request_id", "tenant", "num_prompt_tokens", "num_generated_tokens", "max_tokens", "conversation_id", "priority", "worker_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NUM_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NUM_GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    client_request_id: str
    tenant: str
    num_prompt_tokens: int
    num_generated_tokens: int
    max_tokens: int
    conversation_id: str
    priority: int
    worker_id: str
    def __init__(self, request_id: _Optional[str] = ..., client_request_id: _Optional[str] = ..., tenant: _Optional[str] = ..., num_prompt_tokens: _Optional[int] = ..., num_generated_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., conversation_id: _Optional[str] = ..., priority: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class FrontendSessionResponse(_message.Message):
    __slots__ = ("workers", "end", "placements")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    workers: WorkerDirectory
    end: RequestEnd
    placements: Placements
    def __init__(self, workers: _Optional[_Union[WorkerDirectory, _Mapping]] = ..., end: _Optional[_Union[RequestEnd, _Mapping]] = ..., placements: _Optional[_Union[Placements, _Mapping]] = ...) -> None: ...

class Placements(_message.Message):
    __slots__ = ("placements",)
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    placements: _containers.RepeatedCompositeFieldContainer[Placement]
    def __init__(self, placements: _Optional[_Iterable[_Union[Placement, _Mapping]]] = ...) -> None: ...

class WorkerDirectory(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerEndpoint]
    def __init__(self, workers: _Optional[_Iterable[_Union[WorkerEndpoint, _Mapping]]] = ...) -> None: ...

class WorkerEndpoint(_message.Message):
    __slots__ = ("worker_id", "address", "server_name", "hello")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SERVER_NAME_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    server_name: str
    hello: _worker_pb2.WorkerHello
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., server_name: _Optional[str] = ..., hello: _Optional[_Union[_worker_pb2.WorkerHello, _Mapping]] = ...) -> None: ...

class Placement(_message.Message):
    __slots__ = ("request_id", "worker_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    worker_id: str
    def __init__(self, request_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class RequestEnd(_message.Message):
    __slots__ = ("request_id", "code", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: int
    message: str
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ControlCancelRequest(_message.Message):
    __slots__ = ("caller", "client_request_id")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    caller: str
    client_request_id: str
    def __init__(self, caller: _Optional[str] = ..., client_request_id: _Optional[str] = ...) -> None: ...

class ControlSetTenantWeightRequest(_message.Message):
    __slots__ = ("caller", "request")
    CALLER_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    caller: str
    request: _scheduler_pb2.SetTenantWeightRequest
    def __init__(self, caller: _Optional[str] = ..., request: _Optional[_Union[_scheduler_pb2.SetTenantWeightRequest, _Mapping]] = ...) -> None: ...

class ControlListTenantsRequest(_message.Message):
    __slots__ = ("caller",)
    CALLER_FIELD_NUMBER: _ClassVar[int]
    caller: str
    def __init__(self, caller: _Optional[str] = ...) -> None: ...

class ControlGetClusterStatsRequest(_message.Message):
    __slots__ = ("caller",)
    CALLER_FIELD_NUMBER: _ClassVar[int]
    caller: str
    def __init__(self, caller: _Optional[str] = ...) -> None: ...

class ControlCancelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ControlSetTenantWeightResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: _scheduler_pb2.Tenant
    def __init__(self, tenant: _Optional[_Union[_scheduler_pb2.Tenant, _Mapping]] = ...) -> None: ...

class ControlListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[_scheduler_pb2.Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[_scheduler_pb2.Tenant, _Mapping]]] = ...) -> None: ...

class ControlGetClusterStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _scheduler_pb2.GetClusterStatsResponse
    def __init__(self, stats: _Optional[_Union[_scheduler_pb2.GetClusterStatsResponse, _Mapping]] = ...) -> None: ...
