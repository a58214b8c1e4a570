from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StreamedCallError(_message.Message):
    __slots__ = ("reason", "message", "leader_id")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    leader_id: int
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., leader_id: _Optional[int] = ...) -> None: ...
