"""The gRPC edge of authentication: the SaslService (SCRAM logins) and the interceptor that gives
every call on a listener its principal (raftlog/principals.py ``request_principal``).

Per listener security protocol: SSL calls run as their client certificate's principal (Kafka's
``ssl.principal.mapping.rules``); SASL_SSL / SASL_PLAINTEXT calls must carry a valid session
token (metadata ``raftlog-sasl-token``) and run as its user, else they are refused with
UNAUTHENTICATED / SASL_AUTHENTICATION_FAILED before any servicer runs. Exempt, as Kafka answers
ApiVersions and the SASL requests before authentication: the SaslService itself, health checks
and reflection. PLAINTEXT listeners have no interceptor (every call is ``User:ANONYMOUS``).
"""

from __future__ import annotations

import grpc

from raftlog.api.status import abort, rpc
from raftlog.authentication import TOKEN_METADATA_KEY, Authenticator
from raftlog.config import SASL_PROTOCOLS, SSL
from raftlog.errors import RaftlogError
from raftlog.principals import serving_as
from raftlog.tls import PeerAuthenticator
from raftlog.v1 import sasl_pb2, sasl_pb2_grpc

EXEMPT_PREFIXES = ("/raftlog.v1.SaslService/", "/grpc.health.v1.Health/", "/grpc.reflection.")


class SaslServicer(sasl_pb2_grpc.SaslServiceServicer):
    def __init__(self, authenticator: Authenticator, listener: str, metrics=None):
        self._authenticator = authenticator
        self._listener = listener
        self.metrics = metrics

    @rpc("SaslAuthenticate")
    async def SaslAuthenticate(self, request, context):
        if not request.exchange_id:
            exchange_id, server_first = self._authenticator.grpc_first(
                request.mechanism, request.auth_bytes, self._listener
            )
            return sasl_pb2.SaslAuthenticateResponse(auth_bytes=server_first, exchange_id=exchange_id)
        result = self._authenticator.grpc_final(
            request.mechanism, request.exchange_id, request.auth_bytes, self._listener
        )
        return sasl_pb2.SaslAuthenticateResponse(
            auth_bytes=result.server_final,
            complete=True,
            session_token=result.token,
            session_lifetime_ms=result.lifetime_ms,
            principal=result.principal,
        )


def _token(context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == TOKEN_METADATA_KEY:
            return value
    return None


class ListenerAuthentication(grpc.aio.ServerInterceptor):
    """Wraps every handler of one listener's server so that it runs as the caller's principal."""

    def __init__(self, listener: str, protocol: str, authenticator: Authenticator, peers: PeerAuthenticator):
        assert protocol == SSL or protocol in SASL_PROTOCOLS, f"no interceptor for a {protocol} listener"
        self._listener = listener
        self._sasl = protocol in SASL_PROTOCOLS
        self._authenticator = authenticator
        self._peers = peers
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}  # per method: wrapping is done once

    def _principal(self, context) -> str:
        if self._sasl:
            return self._authenticator.token_principal(_token(context), self._listener)
        return self._peers.identity(context).principal

    async def intercept_service(self, continuation, handler_call_details):
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES):
            return await continuation(handler_call_details)
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # UNIMPLEMENTED
            wrapped = self._wrapped[method] = self._wrap(handler)
        return wrapped

    def _wrap(self, handler):
        """The same handler, its behaviour run as the caller's principal. The wrappers are coroutine
        (or async generator) functions, as grpc.aio tells async handlers by that."""
        principal_of = self._principal

        async def principal_or_abort(context) -> str:
            try:
                return principal_of(context)
            except RaftlogError as exc:
                await abort(context, exc)
                raise AssertionError("abort() raises") from None

        def unary_response(behavior):
            async def run(request, context):
                principal = await principal_or_abort(context)
                with serving_as(principal):
                    return await behavior(request, context)

            return run

        def streamed_response(behavior):
            async def run(request, context):
                principal = await principal_or_abort(context)
                with serving_as(principal):
                    async for item in behavior(request, context):
                        yield item

            return run

        def checked_stream(behavior):
            """A SASL caller's stream: its token is checked again for every request, so a stream
            outlives neither the token's lifetime nor a change of its credential."""

            async def run(request_iterator, context):
                principal = await principal_or_abort(context)

                async def checked():
                    async for item in request_iterator:
                        principal_of(context)  # raises SASL_AUTHENTICATION_FAILED: ends the stream
                        yield item

                with serving_as(principal):
                    async for item in behavior(checked(), context):
                        yield item

            return run

        if handler.stream_stream is not None and self._sasl:
            return handler._replace(stream_stream=checked_stream(handler.stream_stream))
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=unary_response(handler.unary_unary))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=unary_response(handler.stream_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=streamed_response(handler.unary_stream))
        return handler._replace(stream_stream=streamed_response(handler.stream_stream))
