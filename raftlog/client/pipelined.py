"""The client's side of a pipelined stream (raftlog/api/pipelined.py): requests of one kind to one
broker on one long-lived call, each awaiting the answer that names its correlation id.

The call is opened on the first request and again after it ends (the broker restarted, the
channel reconnected): every request still waiting on a call that ended fails with the call's
error, retriable when the call was merely cut, so callers retry as they would a unary call. A
request that gets no answer in time fails REQUEST_TIMED_OUT and the call is cancelled (an answer
that late means the call is stuck, as a unary call's deadline would end it). A broker without the
stream method (UNIMPLEMENTED, an older version) is asked with the unary call from then on.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from raftlog.channels import error_from_rpc
from raftlog.errors import Errors, RaftlogError
from raftlog.sasl_login import SessionLogin, refused_token
from raftlog.v1 import broker_pb2, broker_pb2_grpc, group_pb2, group_pb2_grpc


@dataclass(frozen=True)
class PipelinedMethod:
    """A unary method and its pipelined stream: both take the same request."""

    api_name: str
    stub: Callable[[grpc.aio.Channel], object]
    stream: str  # the stub's stream method
    unary: str  # the stub's unary method
    envelope: type  # the stream's request envelope (correlation_id, request)


PRODUCE = PipelinedMethod(
    "Produce", broker_pb2_grpc.BrokerServiceStub, "ProduceStream", "Produce", broker_pb2.ProduceStreamRequest
)
FETCH = PipelinedMethod(
    "Fetch", broker_pb2_grpc.BrokerServiceStub, "FetchStream", "Fetch", broker_pb2.FetchStreamRequest
)
OFFSET_COMMIT = PipelinedMethod(
    "OffsetCommit",
    group_pb2_grpc.GroupServiceStub,
    "OffsetCommitStream",
    "OffsetCommit",
    group_pb2.OffsetCommitStreamRequest,
)


@dataclass
class _OpenCall:
    call: grpc.aio.StreamStreamCall
    # Done once the broker took the call (its initial metadata), or failed with why it did not:
    # nothing is written before, so a broker without the stream has been sent nothing.
    accepted: asyncio.Future
    session: str | None = None  # the client's SASL session token the call was opened with
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # grpc.aio writes one message at a time
    waiting: dict[int, asyncio.Future] = field(default_factory=dict)  # correlation id -> its answer
    reader: asyncio.Task | None = None


class _StreamUnsupported(RaftlogError):
    """The broker has no such stream: the requests waiting on it were not served."""


def _stream_ended(reason: str) -> RaftlogError:
    return RaftlogError(Errors.BROKER_NOT_AVAILABLE, reason)


class PipelinedCall:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        method: PipelinedMethod,
        login: SessionLogin | None = None,
    ):
        """login: the client's SASL session, if it logs in. A call opened with a token that is
        now due for renewal is retired (its answers still read) and the next request opens
        another, so no call outlives its token; a call refused for its token at once is opened
        again once after a new login, as the unary interceptor retries."""
        stub = method.stub(channel)
        self._open_stream = getattr(stub, method.stream)
        self._unary = getattr(stub, method.unary)
        self._method = method
        self._open: _OpenCall | None = None
        self._ids = itertools.count(1)
        self._stream_supported = True
        self._login = login

    async def request(self, request, timeout_s: float):
        """The response to request, or the RaftlogError its unary call would have raised."""
        if self._stream_supported:
            try:
                return await self._streamed(request, timeout_s)
            except _StreamUnsupported:
                pass  # never served: asked again below
        try:
            return await self._unary(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from None

    async def _streamed(self, request, timeout_s: float):
        open_ = self._open
        if open_ is not None and open_.accepted.done() and self._login is not None:
            if open_.session is None or self._login.current() != open_.session:
                self._retire(open_)
                open_ = None
        open_ = open_ or self._start()
        correlation_id = next(self._ids)
        answer = asyncio.get_running_loop().create_future()
        open_.waiting[correlation_id] = answer
        envelope = self._method.envelope(correlation_id=correlation_id, request=request)
        try:
            async with asyncio.timeout(timeout_s):
                # Shielded: cancelling a caller mid-write would cancel the whole call (grpc.aio),
                # failing every other request on it.
                await asyncio.shield(open_.accepted)
                await asyncio.shield(self._write(open_, envelope))
                answered = await answer
        except TimeoutError:
            self._end(open_, _stream_ended(f"a {self._method.api_name} stream request got no answer in time"))
            raise RaftlogError(
                Errors.REQUEST_TIMED_OUT, f"no answer to {self._method.api_name} within {timeout_s:.1f} s"
            ) from None
        finally:
            open_.waiting.pop(correlation_id, None)
        if answered.HasField("error"):
            error = answered.error
            raise RaftlogError.from_reason(
                error.reason, error.message, error.leader_id if error.leader_id >= 0 else None
            )
        return answered.response

    def _start(self) -> _OpenCall:
        accepted = asyncio.get_running_loop().create_future()
        accepted.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, even if unawaited
        open_ = self._open = _OpenCall(self._open_stream(), accepted)
        # Owned by this PipelinedCall: it ends with its call, and close() cancels it.
        open_.reader = asyncio.get_running_loop().create_task(
            self._read(open_), name=f"{self._method.api_name}-stream-reader"
        )
        return open_

    async def _write(self, open_: _OpenCall, envelope) -> None:
        async with open_.write_lock:
            try:
                await open_.call.write(envelope)
            except asyncio.InvalidStateError:  # the call ended meanwhile: its reader fails the rest
                self._end(open_, _stream_ended(f"the {self._method.api_name} stream ended"))
            except grpc.RpcError as exc:
                self._end(open_, error_from_rpc(exc))
            except asyncio.CancelledError:  # grpc.aio cancelled the call itself (its channel reconnecting)
                self._end(open_, _stream_ended(f"the {self._method.api_name} stream was cancelled"))

    async def _read(self, open_: _OpenCall) -> None:
        try:
            await self._accepted(open_)
            while True:
                answered = await open_.call.read()
                if answered is grpc.aio.EOF:
                    self._end(open_, _stream_ended(f"the broker ended the {self._method.api_name} stream"))
                    return
                answer = open_.waiting.get(answered.correlation_id)
                if answer is not None and not answer.done():
                    answer.set_result(answered)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:  # an older broker
                self._stream_supported = False
                self._end(open_, _StreamUnsupported(Errors.UNSUPPORTED_VERSION, f"no {self._method.stream} here"))
            elif open_.session is not None and refused_token(exc.code(), exc.trailing_metadata()):
                # Its token was voided while the call was open (expired, credential changed): the
                # requests it carried are retried on a call opened after a new login.
                assert self._login is not None, "a session token without a login"
                self._login.forget(open_.session)
                self._end(open_, _stream_ended(f"the broker refused the {self._method.api_name} stream's token"))
            else:
                self._end(open_, error_from_rpc(exc))
        except asyncio.CancelledError:
            current = asyncio.current_task()
            self._end(open_, _stream_ended(f"the {self._method.api_name} stream was cancelled"))
            if current is not None and current.cancelling():
                raise  # closed by us; otherwise grpc.aio ended the call itself (its channel reconnecting)

    async def _accepted(self, open_: _OpenCall) -> None:
        """Waits for the broker to take the call; one refused at once (trailers only) leaves
        accepted undone, and the read that follows raises its status."""
        for attempt in (1, 2):
            await open_.call.initial_metadata()
            if not open_.call.done():
                open_.session = self._login.current() if self._login is not None else None
                open_.accepted.set_result(None)
                return
            if attempt == 1 and self._login is not None:
                if refused_token(await open_.call.code(), await open_.call.trailing_metadata()):
                    token = self._login.current()
                    if token is not None:
                        self._login.forget(token)
                    open_.call = self._open_stream()  # nothing was written to the refused one
                    continue
            return

    def _retire(self, open_: _OpenCall) -> None:
        """No new requests on this call: the client's side is closed, so the broker ends it once
        the requests it carries are answered (its reader hands those out meanwhile)."""
        if self._open is open_:
            self._open = None
        # Owned by the call's reader, which ends with the call (an answer to every request).
        asyncio.ensure_future(self._close_writing(open_))

    async def _close_writing(self, open_: _OpenCall) -> None:
        async with open_.write_lock:
            try:
                await open_.call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError, asyncio.CancelledError):
                pass  # ended already: its reader failed what it carried

    def _end(self, open_: _OpenCall, error: RaftlogError) -> None:
        """The call is over: every request waiting on it fails with error; the next opens another."""
        if self._open is open_:
            self._open = None
        open_.call.cancel()
        if not open_.accepted.done():
            open_.accepted.set_exception(error)
        for answer in open_.waiting.values():
            if not answer.done():
                answer.set_exception(error)
                # Marked retrieved: its request may be failing on `accepted` instead, never awaiting it.
                answer.exception()
        open_.waiting.clear()

    async def close(self) -> None:
        open_, self._open = self._open, None
        if open_ is not None:
            self._end(open_, _stream_ended(f"the {self._method.api_name} stream was closed"))
            if open_.reader is not None:
                open_.reader.cancel()
                await asyncio.gather(open_.reader, return_exceptions=True)
