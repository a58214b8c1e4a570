"""gRPC channels to the other nodes, by node id, opened on first use and kept."""

from __future__ import annotations

import grpc

from raftlog.channels import aio_channel
from raftlog.errors import RaftlogError, error_from_rpc

FORWARDED_METADATA_KEY = "raftlog-forwarded"


class Peers:
    def __init__(self, addresses: dict[int, str]):
        self._addresses = dict(addresses)
        self._channels: dict[int, grpc.aio.Channel] = {}

    def channel(self, node_id: int) -> grpc.aio.Channel:
        if node_id not in self._addresses:
            raise RaftlogError("BROKER_NOT_AVAILABLE", f"node {node_id} has no known address")
        if node_id not in self._channels:
            self._channels[node_id] = aio_channel(self._addresses[node_id])
        return self._channels[node_id]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def was_forwarded(context: grpc.aio.ServicerContext) -> bool:
    return any(key == FORWARDED_METADATA_KEY for key, _ in (context.invocation_metadata() or ()))


async def forward(call, request, timeout_s: float = 10.0):
    """Sends a request on to another node, marked so that it is not forwarded again."""
    try:
        return await call(request, timeout=timeout_s, metadata=((FORWARDED_METADATA_KEY, "1"),))
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
