from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Cursor(_message.Message):
    __slots__ = ("stream", "epoch", "seq")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    stream: str
    epoch: str
    seq: int
    def __init__(self, stream: _Optional[str] = ..., epoch: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("device_id", "software_version", "cursors", "desired_seq", "backlog")
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    SOFTWARE_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    DESIRED_SEQ_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    device_id: str
    software_version: str
    cursors: _containers.RepeatedCompositeFieldContainer[Cursor]
    desired_seq: int
    backlog: int
    def __init__(self, device_id: _Optional[str] = ..., software_version: _Optional[str] = ..., cursors: _Optional[_Iterable[_Union[Cursor, _Mapping]]] = ..., desired_seq: _Optional[int] = ..., backlog: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_batch_records", "max_batch_bytes", "window", "rate", "keepalive_ms")
    MAX_BATCH_RECORDS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_MS_FIELD_NUMBER: _ClassVar[int]
    max_batch_records: int
    max_batch_bytes: int
    window: int
    rate: float
    keepalive_ms: int
    def __init__(self, max_batch_records: _Optional[int] = ..., max_batch_bytes: _Optional[int] = ..., window: _Optional[int] = ..., rate: _Optional[float] = ..., keepalive_ms: _Optional[int] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("cursors", "limits", "server_hlc")
    CURSORS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    SERVER_HLC_FIELD_NUMBER: _ClassVar[int]
    cursors: _containers.RepeatedCompositeFieldContainer[Cursor]
    limits: Limits
    server_hlc: int
    def __init__(self, cursors: _Optional[_Iterable[_Union[Cursor, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., server_hlc: _Optional[int] = ...) -> None: ...

class Record(_message.Message):
    __slots__ = ("kind", "target", "key", "seq", "hlc", "payload")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Record.Kind]
        STATE_UPSERT: _ClassVar[Record.Kind]
        STATE_DELETE: _ClassVar[Record.Kind]
        EVENT: _ClassVar[Record.Kind]
    KIND_UNSPECIFIED: Record.Kind
    STATE_UPSERT: Record.Kind
    STATE_DELETE: Record.Kind
    EVENT: Record.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    kind: Record.Kind
    target: str
    key: str
    seq: int
    hlc: int
    payload: bytes
    def __init__(self, kind: _Optional[_Union[Record.Kind, str]] = ..., target: _Optional[str] = ..., key: _Optional[str] = ..., seq: _Optional[int] = ..., hlc: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("stream", "epoch", "records")
    STREAM_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    stream: str
    epoch: str
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, stream: _Optional[str] = ..., epoch: _Optional[str] = ..., records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("cursor",)
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    cursor: Cursor
    def __init__(self, cursor: _Optional[_Union[Cursor, _Mapping]] = ...) -> None: ...

class DesiredEntry(_message.Message):
    __slots__ = ("key", "value", "hlc", "seq", "deleted")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HLC_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    hlc: int
    seq: int
    deleted: bool
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., hlc: _Optional[int] = ..., seq: _Optional[int] = ..., deleted: _Optional[bool] = ...) -> None: ...

class Desired(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DesiredEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[DesiredEntry, _Mapping]]] = ...) -> None: ...

class DesiredAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class FlowControl(_message.Message):
    __slots__ = ("limits", "pause_ms")
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    PAUSE_MS_FIELD_NUMBER: _ClassVar[int]
    limits: Limits
    pause_ms: int
    def __init__(self, limits: _Optional[_Union[Limits, _Mapping]] = ..., pause_ms: _Optional[int] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ("nonce", "reply")
    NONCE_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    nonce: int
    reply: bool
    def __init__(self, nonce: _Optional[int] = ..., reply: _Optional[bool] = ...) -> None: ...

class DeviceMessage(_message.Message):
    __slots__ = ("hello", "batch", "desired_ack", "ping")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    DESIRED_ACK_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    batch: Batch
    desired_ack: DesiredAck
    ping: Ping
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., batch: _Optional[_Union[Batch, _Mapping]] = ..., desired_ack: _Optional[_Union[DesiredAck, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...

class CloudMessage(_message.Message):
    __slots__ = ("welcome", "ack", "desired", "flow", "ping")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    ack: Ack
    desired: Desired
    flow: FlowControl
    ping: Ping
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., desired: _Optional[_Union[Desired, _Mapping]] = ..., flow: _Optional[_Union[FlowControl, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ...) -> None: ...
