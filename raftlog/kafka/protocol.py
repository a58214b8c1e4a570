"""Kafka request and response frames, encoded and decoded by kio (Python types generated from
Kafka's own JSON message definitions); nothing here is a hand-written codec.

A frame is a 4-byte big-endian size and then the header and the body. The request header's
version (v1, or v2 with tagged fields for flexible versions) and the response header's (v0, or v1)
follow from the API and its version; kio's schema classes carry both. No I/O: the server
(raftlog/kafka/server.py) reads and writes the bytes.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import sys
import uuid
from types import ModuleType
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.response_header.v0.header import ResponseHeader as ResponseHeaderV0
from kio.schema.response_header.v1.header import ResponseHeader as ResponseHeaderV1
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32

SIZE = struct.Struct(">i")
# The first fields of every request header version: api key, api version, correlation id.
HEADER_PREFIX = struct.Struct(">hhi")
API_VERSIONS_KEY = 18
PRODUCE_KEY = 0
NO_THROTTLE = datetime.timedelta(0)


class MalformedRequest(ValueError):
    """A frame that is not a Kafka request: the connection it came on is closed."""


class CloseConnection(Exception):
    """Raised by a handler whose answer is to close the connection: a Produce with acks=0 that
    failed (it has no response, so closing is how Kafka tells the client to refresh its metadata)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RequestFrame:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any  # the kio request entity; None when the API or version is not supported


def peek_header(frame: bytes) -> tuple[int, int, int]:
    if len(frame) < HEADER_PREFIX.size:
        raise MalformedRequest(f"a request of {len(frame)} bytes has no header")
    api_key, api_version, correlation_id = HEADER_PREFIX.unpack_from(frame)
    return api_key, api_version, correlation_id


def decode_request(frame: bytes, supported: dict[int, tuple[int, int]]) -> RequestFrame:
    """The request in `frame` (the bytes after the size). An API or version outside `supported`
    is returned with body None (its answer is UNSUPPORTED_VERSION), undecodable bytes raise."""
    api_key, api_version, correlation_id = peek_header(frame)
    low, high = supported.get(api_key, (0, -1))
    if not low <= api_version <= high:
        return RequestFrame(api_key, api_version, correlation_id, None, None)
    schema = load_request_schema(api_key, api_version)
    try:
        header, header_size = entity_reader(schema.__header_schema__)(frame, 0)
        body, _ = entity_reader(schema)(frame, header_size)
    except Exception as exc:  # noqa: BLE001 - whatever kio raises on bad bytes, the frame is malformed
        raise MalformedRequest(f"api {api_key} v{api_version}: {type(exc).__name__}: {exc}") from None
    # Bytes after the body are ignored, as Kafka's brokers do: librdkafka's Metadata v12 carries
    # three (a field of older versions it still writes).
    return RequestFrame(api_key, api_version, correlation_id, header.client_id, body)


def response_types(api_key: int, api_version: int) -> ModuleType:
    """The kio module holding the response class of that API version and its nested classes."""
    return sys.modules[load_response_schema(api_key, api_version).__module__]


def build(cls: type, **values: Any) -> Any:
    """A kio entity from the values its version has; values for fields that version does not
    have are dropped (a field added in a later version), so one handler serves a version range."""
    names = {field.name for field in dataclasses.fields(cls)}
    return cls(**{name: value for name, value in values.items() if name in names})


def has_field(entity: Any, name: str) -> bool:
    return any(field.name == name for field in dataclasses.fields(entity))


def encode_response(api_key: int, api_version: int, correlation_id: int, body: Any) -> bytes:
    """The frame (size included) answering a request; `body` is a kio response entity."""
    header_schema = type(body).__header_schema__
    header: Any = (
        ResponseHeaderV1(correlation_id=i32(correlation_id))
        if header_schema is ResponseHeaderV1
        else ResponseHeaderV0(correlation_id=i32(correlation_id))
    )
    buffer = io.BytesIO()
    buffer.write(b"\0\0\0\0")
    entity_writer(header_schema)(buffer, header)
    entity_writer(type(body))(buffer, body)
    data = buffer.getbuffer()
    SIZE.pack_into(data, 0, len(data) - SIZE.size)
    return bytes(data)


_EMPTY: dict[str, Any] = {
    "string": "",
    "bytes": b"",
    "records": b"",
    "uuid": uuid.UUID(int=0),
    "datetime_i64": datetime.datetime.fromtimestamp(0, datetime.UTC),
}


def _zero_value(field: dataclasses.Field, code: ErrorCode) -> Any:
    kafka_type = field.metadata.get("kafka_type")
    if kafka_type == "error_code":
        return code
    if kafka_type == "timedelta_i32" or kafka_type == "timedelta_i64":
        return NO_THROTTLE
    if kafka_type in ("int8", "int16", "int32", "int64", "uint16", "uint32", "uint64", "float64"):
        return -1
    if kafka_type == "bool":
        return False
    if kafka_type in _EMPTY:
        return None if "None" in str(field.type) else _EMPTY[kafka_type]  # nullable, or the empty value
    if isinstance(field.type, type) and dataclasses.is_dataclass(field.type):
        return _zero_entity(field.type, code)  # a nested entity
    return ()  # an array


def _zero_entity(cls: type, code: ErrorCode) -> Any:
    values = {
        field.name: _zero_value(field, code)
        for field in dataclasses.fields(cls)
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    return cls(**values)


def error_response(api_key: int, api_version: int, code: ErrorCode) -> Any:
    """A response to a request that cannot be served: the top-level error code set where the
    response has one, every list empty (Kafka's getErrorResponse does the same)."""
    return _zero_entity(load_response_schema(api_key, api_version), code)


def can_answer(api_key: int, api_version: int) -> bool:
    """Whether kio has a response schema for this API version (else the request cannot be answered)."""
    try:
        load_response_schema(api_key, api_version)
    except Exception:  # noqa: BLE001 - kio's UnknownAPIKey/UnknownEntity: no such version exists
        return False
    return True
