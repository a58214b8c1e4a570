"""Forwarding a request to another node (the active controller), marked so it is forwarded once only."""

from __future__ import annotations

import grpc

from raftlog.channels import error_from_rpc

FORWARDED_METADATA_KEY = "raftlog-forwarded"


def was_forwarded(context: grpc.aio.ServicerContext) -> bool:
    return any(key == FORWARDED_METADATA_KEY for key, _ in (context.invocation_metadata() or ()))


async def forward(call, request, timeout_s: float = 10.0):
    """Sends a request on to another node, marked so that it is not forwarded again."""
    try:
        return await call(request, timeout=timeout_s, metadata=((FORWARDED_METADATA_KEY, "1"),))
    except grpc.RpcError as exc:
        raise error_from_rpc(exc) from None
