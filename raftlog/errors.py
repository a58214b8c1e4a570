"""Errors that cross the gRPC boundary: a Kafka-style reason name plus a gRPC status code.

Servers raise RaftlogError (or a subclass); the api layer turns it into a gRPC status
whose details read "REASON: message" and whose trailing metadata carries
``raftlog-reason``. Clients turn such a status back into the same exception.
"""

from __future__ import annotations

import grpc

REASON_METADATA_KEY = "raftlog-reason"
LEADER_METADATA_KEY = "raftlog-leader"

# Kafka error names -> the gRPC status code that fits them best.
REASON_CODES: dict[str, grpc.StatusCode] = {
    "INVALID_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "INVALID_CONFIG": grpc.StatusCode.INVALID_ARGUMENT,
    "INVALID_TOPIC_EXCEPTION": grpc.StatusCode.INVALID_ARGUMENT,
    "UNKNOWN_BROKER": grpc.StatusCode.NOT_FOUND,
    "UNKNOWN_TOPIC_OR_PARTITION": grpc.StatusCode.NOT_FOUND,
    "BROKER_NOT_AVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "NOT_CONTROLLER": grpc.StatusCode.UNAVAILABLE,
    "COORDINATOR_NOT_AVAILABLE": grpc.StatusCode.UNAVAILABLE,
    "STALE_BROKER_EPOCH": grpc.StatusCode.FAILED_PRECONDITION,
    "INCONSISTENT_CLUSTER_ID": grpc.StatusCode.FAILED_PRECONDITION,
    "DUPLICATE_BROKER_REGISTRATION": grpc.StatusCode.ALREADY_EXISTS,
    "REQUEST_TIMED_OUT": grpc.StatusCode.DEADLINE_EXCEEDED,
    "UNKNOWN_SERVER_ERROR": grpc.StatusCode.INTERNAL,
}


class RaftlogError(Exception):
    """An error with a machine-readable reason (a Kafka error name)."""

    def __init__(self, reason: str, message: str, leader_id: int | None = None):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.leader_id = leader_id

    @property
    def code(self) -> grpc.StatusCode:
        return REASON_CODES.get(self.reason, grpc.StatusCode.UNKNOWN)


# Failures of the call itself, in Kafka's terms: all worth a retry (a request that timed out or
# was cut off may still have been carried out, which is what idempotent producers are for).
TRANSPORT_REASONS = {
    grpc.StatusCode.UNAVAILABLE: "BROKER_NOT_AVAILABLE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "REQUEST_TIMED_OUT",
    grpc.StatusCode.CANCELLED: "NETWORK_EXCEPTION",  # e.g. the broker shut down with the call in flight
}


def error_from_rpc(error: grpc.RpcError) -> RaftlogError:
    """Rebuilds the server's RaftlogError from a failed call's status and trailing metadata."""
    metadata = dict(error.trailing_metadata() or ())
    reason = metadata.get(REASON_METADATA_KEY)
    details = error.details() or ""
    leader = metadata.get(LEADER_METADATA_KEY)
    leader_id = int(leader) if leader not in (None, "") else None
    if reason is None:  # the call failed before (or without) a raftlog answer
        reason = TRANSPORT_REASONS.get(error.code(), "UNKNOWN_SERVER_ERROR")
        return RaftlogError(reason, f"{error.code().name}: {details}", leader_id)
    message = details[len(reason) + 2 :] if details.startswith(reason + ": ") else details
    return RaftlogError(reason, message, leader_id)
