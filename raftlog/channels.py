"""How raftlog opens gRPC channels (to peers, between Raft voters, from clients).

gRPC's default reconnect backoff starts at 1 s and grows to 2 minutes: after a node was down
for a few seconds its peers could go on failing fast for longer than a broker session, and a
healthy broker would be fenced for not reaching a restarted controller. Reconnects here start
at 100 ms and never wait more than 1 s.
"""

from __future__ import annotations

import grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
RECONNECT_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra: list | tuple = ()) -> list:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *RECONNECT_OPTIONS,
        *extra,
    ]


def aio_channel(address: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, extra=()) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=channel_options(max_message_bytes, extra))


def sync_channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=channel_options())
