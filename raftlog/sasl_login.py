"""The client side of SASL over gRPC: a SCRAM login (raftlog/scram.py) against one node's
SaslService, and the interceptors that put the session token it gives in every call's metadata.

One ``SessionLogin`` per client (``ClientSecurity.login``), shared by all its channels: a token is
good on every node, so a client logs in once (through whichever node it calls first) and again
once ``SASL_TOKEN_REFRESH_FRACTION`` of the token's lifetime has passed (measured on this client's
monotonic clock from the server's ``session_lifetime_ms``, so the two clocks need not agree). The
login checks the server's signature too: a server without the user's credential cannot pose as
the cluster. A failed login surfaces as the failed call's error (SASL_AUTHENTICATION_FAILED, or
BROKER_NOT_AVAILABLE when the node cannot be reached, which callers retry elsewhere).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from raftlog.errors import REASON_METADATA_KEY
from raftlog.limits import SASL_TOKEN_REFRESH_FRACTION
from raftlog.scram import ClientExchange, ScramError
from raftlog.v1 import sasl_pb2, sasl_pb2_grpc

TOKEN_METADATA_KEY = "raftlog-sasl-token"  # the same key raftlog/authentication.py reads
LOGIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SaslCredentials:
    mechanism: str
    username: str
    password: str = field(repr=False)


def _failure(code: grpc.StatusCode, reason: str | None, details: str) -> grpc.aio.AioRpcError:
    """A failed login as a failed call, so callers read it with error_from_rpc like any other."""
    trailing = grpc.aio.Metadata(*([(REASON_METADATA_KEY, reason)] if reason else []))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details)


class SessionLogin:
    def __init__(self, credentials: SaslCredentials, open_channel: Callable[[str], grpc.Channel]):
        self.credentials = credentials
        self._open_channel = open_channel  # a plain sync channel to an address (no interceptor)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at_s = 0.0
        self.principal: str | None = None
        self.logins = 0  # completed logins (for tests and stats)

    def current(self) -> str | None:
        """The token if it needs no refresh yet."""
        token = self._token
        return token if token is not None and time.monotonic() < self._refresh_at_s else None

    def forget(self, token: str) -> None:
        """A node refused ``token`` (its credential changed, or the node's clock ran ahead): the
        next call logs in again."""
        with self._lock:
            if self._token == token:
                self._token = None

    def token(self, address: str) -> str:
        """A good token, logging in through ``address`` if there is none (blocking)."""
        with self._lock:
            token = self.current()
            if token is None:
                token = self._login(address)
            return token

    def _login(self, address: str) -> str:
        credentials = self.credentials
        exchange = ClientExchange(credentials.mechanism, credentials.username, credentials.password)
        channel = self._open_channel(address)
        try:
            stub = sasl_pb2_grpc.SaslServiceStub(channel)
            first = stub.SaslAuthenticate(
                sasl_pb2.SaslAuthenticateRequest(mechanism=credentials.mechanism, auth_bytes=exchange.first()),
                timeout=LOGIN_TIMEOUT_S,
            )
            try:
                client_final = exchange.final(first.auth_bytes)
            except ScramError as exc:
                raise _failure(grpc.StatusCode.UNAUTHENTICATED, "SASL_AUTHENTICATION_FAILED", str(exc)) from None
            final = stub.SaslAuthenticate(
                sasl_pb2.SaslAuthenticateRequest(
                    mechanism=credentials.mechanism, auth_bytes=client_final, exchange_id=first.exchange_id
                ),
                timeout=LOGIN_TIMEOUT_S,
            )
            try:
                exchange.verify(final.auth_bytes)
            except ScramError as exc:
                raise _failure(
                    grpc.StatusCode.UNAUTHENTICATED, "SASL_AUTHENTICATION_FAILED", f"{address}: {exc}"
                ) from None
        except grpc.RpcError as exc:
            if isinstance(exc, grpc.aio.AioRpcError):
                raise
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            trailing = dict(exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else {}
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            if code is grpc.StatusCode.UNIMPLEMENTED:  # a listener without SaslService
                raise _failure(
                    code,
                    "SASL_AUTHENTICATION_FAILED",
                    f"{address} is not a SASL listener (no SaslService); use its SASL_SSL or SASL_PLAINTEXT port",
                ) from None
            raise _failure(code, trailing.get(REASON_METADATA_KEY), details or code.name) from None
        finally:
            channel.close()
        self._token = final.session_token
        self._refresh_at_s = time.monotonic() + final.session_lifetime_ms / 1000.0 * SASL_TOKEN_REFRESH_FRACTION
        self.principal = final.principal
        self.logins += 1
        return final.session_token


def _with_token(details, token: str):
    metadata = [*(details.metadata or ()), (TOKEN_METADATA_KEY, token)]
    return details._replace(metadata=metadata)


def refused_token(code, trailing) -> bool:
    """A call refused for its session token (not for what it asked): worth one new login."""
    reason = dict(trailing or ()).get(REASON_METADATA_KEY)
    return code == grpc.StatusCode.UNAUTHENTICATED and reason == "SASL_AUTHENTICATION_FAILED"


class _SyncDetails(grpc.ClientCallDetails):
    def __init__(self, details, token: str):
        self.method, self.timeout, self.credentials = details.method, details.timeout, details.credentials
        self.metadata = [*(details.metadata or ()), (TOKEN_METADATA_KEY, token)]
        self.wait_for_ready = getattr(details, "wait_for_ready", None)
        self.compression = getattr(details, "compression", None)


class SyncTokenInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Sends the session token with each call; a call refused for its token logs in again once."""

    def __init__(self, login: SessionLogin, address: str):
        self._login = login
        self._address = address

    def intercept_unary_unary(self, continuation, client_call_details, request):
        token = self._login.token(self._address)
        outcome = continuation(_SyncDetails(client_call_details, token), request)
        if refused_token(outcome.code(), outcome.trailing_metadata()):
            self._login.forget(token)
            outcome = continuation(_SyncDetails(client_call_details, self._login.token(self._address)), request)
        return outcome


class _AioToken:
    def __init__(self, login: SessionLogin, address: str):
        self._login = login
        self._address = address

    async def _token(self) -> str:
        token = self._login.current()
        if token is None:  # log in off the event loop (PBKDF2 and two blocking calls, once per lifetime)
            token = await asyncio.to_thread(self._login.token, self._address)
        return token


class AioTokenInterceptor(_AioToken, grpc.aio.UnaryUnaryClientInterceptor):
    """The asyncio flavour of SyncTokenInterceptor."""

    async def intercept_unary_unary(self, continuation, client_call_details, request):
        token = await self._token()
        call = await continuation(_with_token(client_call_details, token), request)
        if refused_token(await call.code(), await call.trailing_metadata()):
            self._login.forget(token)
            call = await continuation(_with_token(client_call_details, await self._token()), request)
        return call


class AioStreamTokenInterceptor(_AioToken, grpc.aio.StreamStreamClientInterceptor):
    """A stream carries the token it was opened with: the server checks it for every request on
    the stream, and client/pipelined.py opens another stream once the token is due for renewal
    (and once again after a refusal). grpc.aio files an interceptor under one call type only."""

    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return await continuation(_with_token(client_call_details, await self._token()), request_iterator)
