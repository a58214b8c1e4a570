"""Turns exceptions raised by servicer methods into gRPC statuses, and counts requests."""

from __future__ import annotations

import functools
import logging
import time

import grpc

from raftlog.errors import LEADER_METADATA_KEY, REASON_METADATA_KEY, RaftlogError

log = logging.getLogger(__name__)


async def abort(context: grpc.aio.ServicerContext, error: RaftlogError) -> None:
    metadata = [(REASON_METADATA_KEY, error.reason)]
    if error.leader_id is not None:
        metadata.append((LEADER_METADATA_KEY, str(error.leader_id)))
    await context.abort(error.code, f"{error.reason}: {error.message}", trailing_metadata=tuple(metadata))


def rpc(api_name: str):
    """Decorates an async servicer method: RaftlogError -> status with reason; metrics per API.

    The servicer may have a ``metrics`` attribute (raftlog.metrics.NodeMetrics) to count into.
    """

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self, request, context):
            metrics = getattr(self, "metrics", None)
            started = time.perf_counter()
            if metrics:
                metrics.request_started(api_name)
            reason = None
            try:
                return await method(self, request, context)
            except RaftlogError as exc:
                reason = exc.reason
                await abort(context, exc)
            except (grpc.aio.AbortError, grpc.RpcError):
                reason = "ABORTED"
                raise
            except Exception as exc:  # noqa: BLE001 - report, never crash the server
                log.exception("%s failed", api_name)
                reason = "UNKNOWN_SERVER_ERROR"
                await abort(context, RaftlogError("UNKNOWN_SERVER_ERROR", f"{type(exc).__name__}: {exc}"))
            finally:
                if metrics:
                    metrics.request_finished(api_name, time.perf_counter() - started, reason)

        return wrapper

    return decorate
