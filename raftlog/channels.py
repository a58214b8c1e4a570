"""How raftlog opens gRPC channels (to peers, between Raft voters, from clients), keeps them
(``Peers``: one channel per node id), and reads a failed call (``error_from_rpc``: the calling
side's gRPC edge, where a status becomes a ``RaftlogError`` again).

gRPC's default reconnect backoff starts at 1 s and grows to 2 minutes: after a node was down
for a few seconds its peers could go on failing fast for longer than a broker session, and a
healthy broker would be fenced for not reaching a restarted controller. Reconnects here start
at 100 ms and never wait more than 1 s.

Keepalive has two sides that must agree (see ``GRPC_KEEPALIVE_TIME_MS`` in raftlog/limits.py):
``KEEPALIVE_OPTIONS`` for channels that ping (the Raft transport's), ``SERVER_KEEPALIVE_OPTIONS`` for
every server, which accepts those pings even on a stream it writes nothing to.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

from raftlog.errors import (
    LEADER_METADATA_KEY,
    REASON_METADATA_KEY,
    Errors,
    RaftlogError,
)
from raftlog.limits import (
    GRPC_KEEPALIVE_TIME_MS,
    GRPC_KEEPALIVE_TIMEOUT_MS,
    GRPC_MIN_RECV_PING_INTERVAL_MS,
    MAX_MESSAGE_BYTES,
)
from raftlog.sasl_login import AioStreamTokenInterceptor, AioTokenInterceptor, SyncTokenInterceptor
from raftlog.tls import ClientSecurity

DEFAULT_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES  # the one limit, explained in raftlog/limits.py
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def keepalive_options(time_ms: int = GRPC_KEEPALIVE_TIME_MS) -> list[tuple[str, int]]:
    """A channel that pings every time_ms, with or without calls, without a cap on pings."""
    return [
        ("grpc.keepalive_time_ms", time_ms),
        ("grpc.keepalive_timeout_ms", GRPC_KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),  # 0: no cap (gRPC's default stops after 2)
    ]


def server_keepalive_options(min_ping_interval_ms: int = GRPC_MIN_RECV_PING_INTERVAL_MS) -> list[tuple[str, int]]:
    """A server that accepts a ping (without data, and without calls) every min_ping_interval_ms."""
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", min_ping_interval_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", min_ping_interval_ms),
        ("grpc.http2.max_pings_without_data", 0),
    ]


KEEPALIVE_OPTIONS = keepalive_options()
SERVER_KEEPALIVE_OPTIONS = server_keepalive_options()


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra: list | tuple = ()) -> list:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *RECONNECT_OPTIONS,
        *extra,
    ]


def aio_channel(
    address: str,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    extra=(),
    security: ClientSecurity | None = None,
) -> grpc.aio.Channel:
    options = channel_options(max_message_bytes, extra)
    # SASL: every call carries the client's session token (raftlog/sasl_login.py)
    interceptors = (
        [AioTokenInterceptor(security.login, address), AioStreamTokenInterceptor(security.login, address)]
        if security and security.login
        else None
    )
    if security is not None and security.tls:  # TLS: raftlog/tls.py; credentials read from disk now
        return grpc.aio.secure_channel(
            address, security.channel_credentials(), options=options, interceptors=interceptors
        )
    return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)


def sync_channel(address: str, security: ClientSecurity | None = None) -> grpc.Channel:
    if security is not None and security.tls:
        channel = grpc.secure_channel(address, security.channel_credentials(), options=channel_options())
    else:
        channel = grpc.insecure_channel(address, options=channel_options())
    if security is not None and security.login is not None:
        return grpc.intercept_channel(channel, SyncTokenInterceptor(security.login, address))
    return channel


class Peers:
    """gRPC channels to the other nodes, by node id, opened on first use and kept."""

    def __init__(
        self,
        addresses: dict[int, str],
        security: ClientSecurity | None = None,
        resolve: Callable[[int], str | None] | None = None,
    ):
        """addresses: the voters'; resolve: the address of any other node (a broker-only node's
        registration in the metadata image), None when it has none."""
        self._addresses = dict(addresses)
        self._security = security  # the node's own certificate, for mutual TLS with its peers
        self._resolve = resolve
        self._channels: dict[int, tuple[str, grpc.aio.Channel]] = {}
        self._retired: list[grpc.aio.Channel] = []  # to a node's old address; closed with the others

    def address(self, node_id: int) -> str | None:
        address = self._addresses.get(node_id)
        if address is None and self._resolve is not None:
            address = self._resolve(node_id)
        return address

    def channel(self, node_id: int) -> grpc.aio.Channel:
        address = self.address(node_id)
        if address is None:
            raise RaftlogError(Errors.BROKER_NOT_AVAILABLE, f"node {node_id} has no known address")
        known = self._channels.get(node_id)
        if known is None or known[0] != address:  # new, or a re-registered broker that moved
            if known is not None:
                self._retired.append(known[1])
            known = self._channels[node_id] = (address, aio_channel(address, security=self._security))
        return known[1]

    async def close(self) -> None:
        for channel in [c for _, c in self._channels.values()] + self._retired:
            await channel.close()
        self._retired.clear()
        self._channels.clear()


# A call that failed without a raftlog answer (no reason trailer), in Kafka's terms. All are worth
# a retry: a request that timed out or was cut off may still have been carried out, which is
# what idempotent producers are for.
TRANSPORT_ERRORS: dict[grpc.StatusCode, Errors] = {
    grpc.StatusCode.UNAVAILABLE: Errors.BROKER_NOT_AVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Errors.REQUEST_TIMED_OUT,
    grpc.StatusCode.CANCELLED: Errors.NETWORK_EXCEPTION,  # e.g. the broker shut down with the call in flight
}


# What gRPC core reports, as INTERNAL, for a call its transport broke (seen by a producer on TLS
# connections while brokers were killed, cut off and paused): the connection, not the server, failed. Any
# other INTERNAL without a raftlog reason (a message that cannot be parsed, say) stays a server error.
CORE_TRANSPORT_FAILURE = "Internal error from Core"


def error_from_rpc(error: grpc.RpcError) -> RaftlogError:
    """Rebuilds the server's RaftlogError from a failed call's status and trailing metadata."""
    metadata = dict(error.trailing_metadata() or ())
    reason = metadata.get(REASON_METADATA_KEY)
    details = error.details() or ""
    leader = metadata.get(LEADER_METADATA_KEY)
    leader_id = int(leader) if leader not in (None, "") else None
    if reason is None:  # the call failed before (or without) a raftlog answer
        transport_error = TRANSPORT_ERRORS.get(error.code(), Errors.UNKNOWN_SERVER_ERROR)
        if error.code() == grpc.StatusCode.INTERNAL and details == CORE_TRANSPORT_FAILURE:
            transport_error = Errors.NETWORK_EXCEPTION
        return RaftlogError(transport_error, f"{error.code().name}: {details}", leader_id)
    message = details[len(reason) + 2 :] if details.startswith(reason + ": ") else details
    return RaftlogError.from_reason(reason, message, leader_id)
