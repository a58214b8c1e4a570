"""The server's gRPC edge: exceptions raised by servicer methods become gRPC statuses; requests are counted.

``STATUS_CODES`` is the one table from Kafka error names to gRPC status codes. It covers every
``Errors`` member (checked at import), so a client in any language can act on the code alone:
UNAVAILABLE and DEADLINE_EXCEEDED (and ABORTED, a conflict with a concurrent change) are worth a
retry; the Kafka name itself travels in the details and in the ``raftlog-reason`` trailer.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from raftlog.errors import (
    LEADER_METADATA_KEY,
    REASON_METADATA_KEY,
    Errors,
    RaftlogError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

_C = grpc.StatusCode
STATUS_CODES: dict[Errors, grpc.StatusCode] = {
    Errors.REQUEST_TIMED_OUT: _C.DEADLINE_EXCEEDED,
    Errors.NETWORK_EXCEPTION: _C.UNAVAILABLE,
    Errors.BROKER_NOT_AVAILABLE: _C.UNAVAILABLE,
    Errors.NOT_CONTROLLER: _C.UNAVAILABLE,
    Errors.COORDINATOR_NOT_AVAILABLE: _C.UNAVAILABLE,
    Errors.NOT_LEADER_OR_FOLLOWER: _C.UNAVAILABLE,
    Errors.LEADER_NOT_AVAILABLE: _C.UNAVAILABLE,
    Errors.UNKNOWN_TOPIC_OR_PARTITION: _C.NOT_FOUND,
    Errors.FENCED_LEADER_EPOCH: _C.ABORTED,
    Errors.UNKNOWN_LEADER_EPOCH: _C.ABORTED,
    Errors.KAFKA_STORAGE_ERROR: _C.UNAVAILABLE,
    Errors.PREFERRED_LEADER_NOT_AVAILABLE: _C.UNAVAILABLE,
    Errors.ELIGIBLE_LEADERS_NOT_AVAILABLE: _C.UNAVAILABLE,
    Errors.NOT_ENOUGH_REPLICAS: _C.UNAVAILABLE,
    Errors.NOT_ENOUGH_REPLICAS_AFTER_APPEND: _C.UNAVAILABLE,
    Errors.INVALID_REQUEST: _C.INVALID_ARGUMENT,
    Errors.INVALID_CONFIG: _C.INVALID_ARGUMENT,
    Errors.INVALID_TOPIC_EXCEPTION: _C.INVALID_ARGUMENT,
    Errors.INVALID_PARTITIONS: _C.INVALID_ARGUMENT,
    Errors.INVALID_REPLICATION_FACTOR: _C.INVALID_ARGUMENT,
    Errors.INVALID_REPLICA_ASSIGNMENT: _C.INVALID_ARGUMENT,
    Errors.INVALID_REQUIRED_ACKS: _C.INVALID_ARGUMENT,
    Errors.INVALID_RECORD: _C.INVALID_ARGUMENT,
    Errors.CORRUPT_MESSAGE: _C.INVALID_ARGUMENT,
    Errors.UNSUPPORTED_VERSION: _C.INVALID_ARGUMENT,
    Errors.UNSUPPORTED_COMPRESSION_TYPE: _C.INVALID_ARGUMENT,
    Errors.MESSAGE_TOO_LARGE: _C.INVALID_ARGUMENT,
    Errors.OFFSET_OUT_OF_RANGE: _C.OUT_OF_RANGE,
    Errors.TOPIC_ALREADY_EXISTS: _C.ALREADY_EXISTS,
    Errors.REASSIGNMENT_IN_PROGRESS: _C.FAILED_PRECONDITION,
    Errors.NO_REASSIGNMENT_IN_PROGRESS: _C.FAILED_PRECONDITION,
    Errors.ELECTION_NOT_NEEDED: _C.FAILED_PRECONDITION,
    Errors.INELIGIBLE_REPLICA: _C.FAILED_PRECONDITION,
    Errors.INVALID_UPDATE_VERSION: _C.ABORTED,
    Errors.OUT_OF_ORDER_SEQUENCE_NUMBER: _C.FAILED_PRECONDITION,
    Errors.UNKNOWN_PRODUCER_ID: _C.FAILED_PRECONDITION,
    Errors.INVALID_PRODUCER_EPOCH: _C.FAILED_PRECONDITION,
    Errors.NOT_COORDINATOR: _C.UNAVAILABLE,
    Errors.COORDINATOR_LOAD_IN_PROGRESS: _C.UNAVAILABLE,
    Errors.UNKNOWN_MEMBER_ID: _C.NOT_FOUND,
    Errors.FENCED_MEMBER_EPOCH: _C.FAILED_PRECONDITION,
    Errors.STALE_MEMBER_EPOCH: _C.FAILED_PRECONDITION,
    Errors.UNRELEASED_INSTANCE_ID: _C.ALREADY_EXISTS,
    Errors.FENCED_INSTANCE_ID: _C.FAILED_PRECONDITION,
    Errors.GROUP_ID_NOT_FOUND: _C.NOT_FOUND,
    Errors.NON_EMPTY_GROUP: _C.FAILED_PRECONDITION,
    Errors.INVALID_GROUP_ID: _C.INVALID_ARGUMENT,
    Errors.INVALID_REGULAR_EXPRESSION: _C.INVALID_ARGUMENT,
    Errors.UNSUPPORTED_ASSIGNOR: _C.INVALID_ARGUMENT,
    Errors.MEMBER_ID_REQUIRED: _C.FAILED_PRECONDITION,
    Errors.REBALANCE_IN_PROGRESS: _C.FAILED_PRECONDITION,
    Errors.ILLEGAL_GENERATION: _C.FAILED_PRECONDITION,
    Errors.INCONSISTENT_GROUP_PROTOCOL: _C.FAILED_PRECONDITION,
    Errors.INVALID_SESSION_TIMEOUT: _C.INVALID_ARGUMENT,
    Errors.GROUP_SUBSCRIBED_TO_TOPIC: _C.FAILED_PRECONDITION,
    Errors.UNKNOWN_BROKER: _C.NOT_FOUND,
    Errors.STALE_BROKER_EPOCH: _C.FAILED_PRECONDITION,
    Errors.DUPLICATE_BROKER_REGISTRATION: _C.ALREADY_EXISTS,
    Errors.DUPLICATE_VOTER: _C.ALREADY_EXISTS,
    Errors.VOTER_NOT_FOUND: _C.NOT_FOUND,
    Errors.INVALID_VOTER_KEY: _C.FAILED_PRECONDITION,
    Errors.INCONSISTENT_CLUSTER_ID: _C.FAILED_PRECONDITION,
    Errors.CLUSTER_AUTHORIZATION_FAILED: _C.PERMISSION_DENIED,
    Errors.TOPIC_AUTHORIZATION_FAILED: _C.PERMISSION_DENIED,
    Errors.GROUP_AUTHORIZATION_FAILED: _C.PERMISSION_DENIED,
    Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: _C.PERMISSION_DENIED,
    Errors.SECURITY_DISABLED: _C.FAILED_PRECONDITION,
    Errors.SSL_AUTHENTICATION_FAILED: _C.UNAUTHENTICATED,
    Errors.SASL_AUTHENTICATION_FAILED: _C.UNAUTHENTICATED,
    Errors.UNSUPPORTED_SASL_MECHANISM: _C.UNAUTHENTICATED,
    Errors.ILLEGAL_SASL_STATE: _C.FAILED_PRECONDITION,
    Errors.RESOURCE_NOT_FOUND: _C.NOT_FOUND,
    Errors.DUPLICATE_RESOURCE: _C.INVALID_ARGUMENT,
    Errors.UNACCEPTABLE_CREDENTIAL: _C.INVALID_ARGUMENT,
    Errors.UNKNOWN_SERVER_ERROR: _C.INTERNAL,
}
_unmapped = [e.name for e in Errors if STATUS_CODES.get(e, _C.UNKNOWN) in (_C.UNKNOWN, _C.OK)]
assert not _unmapped, f"errors without a gRPC status code: {_unmapped}"


async def abort(context: grpc.aio.ServicerContext, error: RaftlogError) -> None:
    metadata = [(REASON_METADATA_KEY, error.reason)]
    if error.leader_id is not None:
        metadata.append((LEADER_METADATA_KEY, str(error.leader_id)))
    await context.abort(
        STATUS_CODES[error.error], f"{error.reason}: {error.message}", trailing_metadata=tuple(metadata)
    )


async def counted(metrics, api_name: str, call: Callable[[], Awaitable[T]]) -> T:
    """Serves one request: counted per API (metrics: raftlog.metrics.NodeMetrics or None), an
    unexpected exception logged and raised as UNKNOWN_SERVER_ERROR (never crash the server). A
    unary call (rpc) and a pipelined stream's request (api/pipelined.py) are served alike."""
    started = time.perf_counter()
    if metrics:
        metrics.request_started(api_name)
    reason = None
    try:
        return await call()
    except RaftlogError as exc:
        reason = exc.reason
        raise
    except (grpc.aio.AbortError, grpc.RpcError):
        reason = "ABORTED"
        raise
    except Exception as exc:  # noqa: BLE001 - report, never crash the server
        log.exception("%s failed", api_name)
        reason = "UNKNOWN_SERVER_ERROR"
        raise RaftlogError("UNKNOWN_SERVER_ERROR", f"{type(exc).__name__}: {exc}") from exc
    finally:
        if metrics:
            metrics.request_finished(api_name, time.perf_counter() - started, reason)


def rpc(api_name: str):
    """Decorates an async servicer method: RaftlogError -> status with reason; metrics per API.

    The servicer may have a ``metrics`` attribute (raftlog.metrics.NodeMetrics) to count into.
    """

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self, request, context):
            try:
                return await counted(getattr(self, "metrics", None), api_name, lambda: method(self, request, context))
            except RaftlogError as exc:
                await abort(context, exc)

        return wrapper

    return decorate
