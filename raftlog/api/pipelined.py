"""Pipelined streams: many requests of one kind on one long-lived gRPC call (ProduceStream,
OffsetCommitStream), each answered by its correlation id as soon as it is served.

On this machine a unary call costs the server about twice the CPU of a message on an open
stream (an empty unary call ~505 us and 721 us round trip, a stream message ~220 us and 319 us),
so the clients' hot paths (produce, offset commit) go on a stream. Each request is served as its
unary call would be (the same handler, counted under the same API name) side by side with the
others, at most PIPELINED_MAX_IN_FLIGHT_PER_STREAM at once. A request's failure is in its answer
(StreamedCallError, what the unary call's status would carry) and does not end the stream; the
stream ends when the client closes its side (after the answers in flight), or with the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from raftlog.api.status import abort, counted
from raftlog.errors import RaftlogError
from raftlog.limits import PIPELINED_MAX_IN_FLIGHT_PER_STREAM as MAX_IN_FLIGHT
from raftlog.node_ids import NO_NODE
from raftlog.v1 import pipelined_pb2

_END = object()  # the client closed its side and every answer is out


def streamed_error(exc: RaftlogError) -> pipelined_pb2.StreamedCallError:
    return pipelined_pb2.StreamedCallError(
        reason=exc.reason, message=exc.message, leader_id=NO_NODE if exc.leader_id is None else exc.leader_id
    )


async def serve_pipelined(
    context: grpc.aio.ServicerContext,
    requests: AsyncIterator[Any],
    serve: Callable[[Any], Awaitable[Any]],
    answer_type: type,
    metrics,
    api_name: str,
) -> AsyncIterator[Any]:
    """Answers a stream of envelopes (correlation_id, request) with answer_type envelopes
    (correlation_id, response or error), serve(request) giving each response. An async
    generator: the servicer method yields what this yields. The initial metadata goes out first:
    a client writes nothing before it, so it tells this stream from a broker without it."""
    await context.send_initial_metadata(())
    answers: asyncio.Queue = asyncio.Queue()
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    serving: set[asyncio.Task] = set()

    async def answer(correlation_id: int, request) -> None:
        try:
            response = await counted(metrics, api_name, lambda: serve(request))
            answers.put_nowait(answer_type(correlation_id=correlation_id, response=response))
        except RaftlogError as exc:
            answers.put_nowait(answer_type(correlation_id=correlation_id, error=streamed_error(exc)))
        except Exception as exc:  # noqa: BLE001 - a nested call's failure (counted() passes those on)
            error = RaftlogError("UNKNOWN_SERVER_ERROR", f"{type(exc).__name__}: {exc}")
            answers.put_nowait(answer_type(correlation_id=correlation_id, error=streamed_error(error)))
        finally:
            slots.release()

    async def read() -> None:
        try:
            async for envelope in requests:
                await slots.acquire()
                # Owned by this stream: cancelled with it below (as a unary handler is with its call).
                task = asyncio.get_running_loop().create_task(answer(envelope.correlation_id, envelope.request))
                serving.add(task)
                task.add_done_callback(serving.discard)
            if serving:
                await asyncio.wait(set(serving))
            answers.put_nowait(_END)
        except Exception as exc:  # noqa: BLE001 - the call failed: handed to the answering side
            answers.put_nowait(exc)

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while True:
            item = await answers.get()
            if item is _END:
                return
            if isinstance(item, RaftlogError):  # e.g. the caller's token expired (api/sasl_service.py)
                await abort(context, item)
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        reader.cancel()
        for task in list(serving):
            task.cancel()
