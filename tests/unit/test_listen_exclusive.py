"""A node's gRPC port is its own: a second server on the same port is refused, not shared.

gRPC turns SO_REUSEPORT on by default, so a second cluster started on a running cluster's ports
bound them too and the kernel handed each new client to one of the two clusters at random
(seen as INCONSISTENT_CLUSTER_ID from a node "of the same cluster").
"""

from __future__ import annotations

import asyncio

import grpc

from raftlog.node import GRPC_OPTIONS


def _bind(server: grpc.aio.Server, address: str) -> int:
    """The port bound, or 0 when the address is taken (gRPC raises or returns 0, by version)."""
    try:
        return server.add_insecure_port(address)
    except RuntimeError:
        return 0


def test_a_second_server_on_a_taken_port_is_refused() -> None:
    async def scenario() -> tuple[int, int]:
        first = grpc.aio.server(options=GRPC_OPTIONS)
        second = grpc.aio.server(options=GRPC_OPTIONS)
        port = _bind(first, "127.0.0.1:0")
        await first.start()
        try:
            return port, _bind(second, f"127.0.0.1:{port}")
        finally:
            await first.stop(None)
            await second.stop(None)

    port, second_port = asyncio.run(scenario())
    assert port > 0
    assert second_port == 0, f"a second server bound port {port} too"
