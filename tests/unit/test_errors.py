"""Failed calls become Kafka-named errors; the transport's own failures are retriable names."""

import grpc
import pytest

from raftlog.client.producer import RETRIABLE
from raftlog.errors import REASON_METADATA_KEY, error_from_rpc


class FailedCall(grpc.RpcError):
    def __init__(self, code, details="", metadata=()):
        self._code, self._details, self._metadata = code, details, metadata

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._metadata


@pytest.mark.parametrize("code, reason", [
    (grpc.StatusCode.UNAVAILABLE, "BROKER_NOT_AVAILABLE"),
    (grpc.StatusCode.DEADLINE_EXCEEDED, "REQUEST_TIMED_OUT"),
    (grpc.StatusCode.CANCELLED, "NETWORK_EXCEPTION"),
])
def test_transport_failures_are_retried_by_the_producer(code, reason):
    error = error_from_rpc(FailedCall(code, "boom"))
    assert error.reason == reason and reason in RETRIABLE


def test_a_server_reason_travels_in_the_trailing_metadata():
    error = error_from_rpc(FailedCall(grpc.StatusCode.NOT_FOUND, "UNKNOWN_TOPIC_OR_PARTITION: no such topic",
                                      ((REASON_METADATA_KEY, "UNKNOWN_TOPIC_OR_PARTITION"),)))
    assert (error.reason, error.message) == ("UNKNOWN_TOPIC_OR_PARTITION", "no such topic")
    assert error_from_rpc(FailedCall(grpc.StatusCode.INTERNAL, "?")).reason == "UNKNOWN_SERVER_ERROR"
