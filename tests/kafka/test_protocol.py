"""The Kafka listener's framing and error table (raftlog/kafka/protocol.py, errors.py), without sockets."""

from __future__ import annotations

import io
import struct

import pytest
from kio.index import api_key_map, schema_name_map
from kio.schema.errors import ErrorCode
from kio.schema.metadata.v12.request import MetadataRequest
from kio.schema.request_header.v2.header import RequestHeader
from kio.serial import entity_reader, entity_writer

from raftlog.errors import Errors, RaftlogError
from raftlog.kafka.errors import code_of, code_of_error
from raftlog.kafka.handlers import API_VERSIONS
from raftlog.kafka.protocol import MalformedRequest, decode_request, encode_response, error_response


def frame(api_key: int, version: int, body: bytes, correlation_id: int = 42) -> bytes:
    buffer = io.BytesIO()
    header = RequestHeader(
        request_api_key=api_key, request_api_version=version, correlation_id=correlation_id, client_id="t"
    )
    entity_writer(RequestHeader)(buffer, header)
    return buffer.getvalue() + body


def metadata_body(topics) -> bytes:
    buffer = io.BytesIO()
    entity_writer(MetadataRequest)(
        buffer,
        MetadataRequest(topics=topics, allow_auto_topic_creation=False, include_topic_authorized_operations=False),
    )
    return buffer.getvalue()


def test_a_served_request_decodes_with_its_header():
    request = decode_request(frame(3, 12, metadata_body(None)), API_VERSIONS)
    assert (request.api_key, request.api_version, request.correlation_id, request.client_id) == (3, 12, 42, "t")
    assert request.body.topics is None


def test_trailing_bytes_after_the_body_are_ignored_as_kafka_does():
    # librdkafka's Metadata v12 carries three bytes kio's v12 schema does not have.
    request = decode_request(frame(3, 12, metadata_body(()) + b"\x01\x00\x00"), API_VERSIONS)
    assert request.body.topics == ()


def test_an_unserved_version_has_no_body_and_a_truncated_one_is_malformed():
    assert decode_request(frame(3, 13, b""), API_VERSIONS).body is None
    assert decode_request(frame(29, 1, b""), API_VERSIONS).body is None  # DescribeAcls: not served
    with pytest.raises(MalformedRequest):
        decode_request(frame(3, 12, b"\x05\x00"), API_VERSIONS)  # topics array cut short
    with pytest.raises(MalformedRequest):
        decode_request(b"\x00\x03", API_VERSIONS)


def test_every_kafka_api_version_has_an_encodable_unsupported_version_answer():
    for api_key, name in api_key_map.items():
        for version in schema_name_map[name]:
            data = encode_response(api_key, version, 7, error_response(api_key, version, ErrorCode.unsupported_version))
            (size,) = struct.unpack_from(">i", data)
            assert size == len(data) - 4
            assert struct.unpack_from(">i", data, 4)[0] == 7  # correlation id first in every header


def test_an_error_response_carries_the_code_where_the_response_has_one():
    from kio.schema.api_versions.v3.response import ApiVersionsResponse

    body = error_response(18, 3, ErrorCode.unsupported_version)
    assert isinstance(body, ApiVersionsResponse) and body.error_code == ErrorCode.unsupported_version
    data = encode_response(18, 3, 1, body)
    decoded, _ = entity_reader(ApiVersionsResponse)(data, 8)  # ApiVersions: response header v0
    assert decoded.error_code == ErrorCode.unsupported_version


def test_every_raftlog_error_has_kafkas_code_of_the_same_name():
    for error in Errors:
        code = code_of_error(RaftlogError(error, "x"))
        if error not in (Errors.UNKNOWN_BROKER, Errors.SSL_AUTHENTICATION_FAILED):  # mapped by hand
            assert code.name == error.name.lower()
    assert code_of("SSL_AUTHENTICATION_FAILED") == ErrorCode.sasl_authentication_failed
    assert code_of("") == ErrorCode.none
    assert code_of("NOT_LEADER_OR_FOLLOWER") == ErrorCode.not_leader_or_follower == 6
    assert code_of("OUT_OF_ORDER_SEQUENCE_NUMBER") == 45
