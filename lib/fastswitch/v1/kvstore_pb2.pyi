from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KVEntry(_message.Message):
    __slots__ = ("conversation_id", "worker_id", "num_tokens", "prefix_hash", "num_bytes", "last_used_unix_ms")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFIX_HASH_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    worker_id: str
    num_tokens: int
    prefix_hash: str
    num_bytes: int
    last_used_unix_ms: int
    def __init__(self, conversation_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., num_tokens: _Optional[int] = ..., prefix_hash: _Optional[str] = ..., num_bytes: _Optional[int] = ..., last_used_unix_ms: _Optional[int] = ...) -> None: ...

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "incarnation", "capacity_bytes", "address")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    INCARNATION_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    incarnation: str
    capacity_bytes: int
    address: str
    def __init__(self, worker_id: _Optional[str] = ..., incarnation: _Optional[str] = ..., capacity_bytes: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("num_dropped_entries",)
    NUM_DROPPED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    num_dropped_entries: int
    def __init__(self, num_dropped_entries: _Optional[int] = ...) -> None: ...

class PublishKVRequest(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: KVEntry
    def __init__(self, entry: _Optional[_Union[KVEntry, _Mapping]] = ...) -> None: ...

class PublishKVResponse(_message.Message):
    __slots__ = ("evict_conversation_ids",)
    EVICT_CONVERSATION_IDS_FIELD_NUMBER: _ClassVar[int]
    evict_conversation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, evict_conversation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class LookupKVRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class LookupKVResponse(_message.Message):
    __slots__ = ("entry",)
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    entry: KVEntry
    def __init__(self, entry: _Optional[_Union[KVEntry, _Mapping]] = ...) -> None: ...

class TouchKVRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class TouchKVResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EvictKVRequest(_message.Message):
    __slots__ = ("conversation_id", "worker_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    worker_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class EvictKVResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetWorkerSnapshotRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class GetWorkerSnapshotResponse(_message.Message):
    __slots__ = ("entries", "capacity_bytes", "used_bytes")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[KVEntry]
    capacity_bytes: int
    used_bytes: int
    def __init__(self, entries: _Optional[_Iterable[_Union[KVEntry, _Mapping]]] = ..., capacity_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...
