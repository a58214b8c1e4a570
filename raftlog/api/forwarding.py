"""Forwarding a request to another node (the active controller), marked so it is forwarded once only."""

from __future__ import annotations

import grpc

from raftlog.channels import error_from_rpc
from raftlog.errors import RaftlogError

FORWARDED_METADATA_KEY = "raftlog-forwarded"


def was_forwarded(context: grpc.aio.ServicerContext) -> bool:
    return any(key == FORWARDED_METADATA_KEY for key, _ in (context.invocation_metadata() or ()))


async def forward(call, request, timeout_s: float = 10.0):
    """Sends a request on to another node, marked so that it is not forwarded again."""
    try:
        return await call(request, timeout=timeout_s, metadata=((FORWARDED_METADATA_KEY, "1"),))
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None


async def forward_to_controller(driver, peers, stub_class, method: str, request, context, timeout_s: float = 10.0):
    """The active controller's answer when this node is not it; None when it is. `context` is the
    gRPC call's (a call forwarded to us is never forwarded again), or None for a request that came
    in on another protocol (the Kafka listener)."""
    status = driver.status()
    if status.leader_id == status.node_id:
        return None
    if status.leader_id is None or (context is not None and was_forwarded(context)):
        raise RaftlogError("NOT_CONTROLLER", "no active controller is known; retry", status.leader_id)
    stub = stub_class(peers.channel(status.leader_id))
    return await forward(getattr(stub, method), request, timeout_s)
