"""SASL on one Kafka connection: SaslHandshake (v1) and SaslAuthenticate (v0-2) with SASL/PLAIN
and SCRAM-SHA-256/512, checked against the SCRAM credentials of the metadata image
(raftlog/authentication.py). Part of a connection's request handling, apart from its transport:
the same state machine runs whether the bytes came over TCP or TLS (SASL_PLAINTEXT, SASL_SSL).

States, as Kafka's SaslServerAuthenticator has them: on a SASL_* listener a connection starts
unauthenticated and may send only ApiVersions, SaslHandshake and SaslAuthenticate; anything else
closes it (ILLEGAL_SASL_STATE). After a handshake naming an enabled mechanism, SaslAuthenticate
carries the mechanism's messages (PLAIN: one; SCRAM: two); a failed login is answered with
SASL_AUTHENTICATION_FAILED and the connection is closed. On success the connection's principal
is ``User:<name>`` for all its later requests. On other listeners the principal is ANONYMOUS and
SaslHandshake is answered ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from raftlog.authentication import Authenticator, check_plain, failed_login
from raftlog.config import SASL_PROTOCOLS
from raftlog.errors import RaftlogError
from raftlog.kafka.errors import code_of_error
from raftlog.kafka.protocol import build, response_types
from raftlog.principals import ANONYMOUS, user_principal
from raftlog.scram import ScramCredential, ServerExchange

SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
API_VERSIONS_KEY = 18
# Served before authentication (Kafka's rule). SaslHandshake v0 is advertised because older librdkafka
# (kcat's 2.0.2) counts a broker as SASL-capable only when v0 is in range (it then
# uses v1 and SaslAuthenticate); a v0 handshake itself, which raw unframed SASL tokens would follow,
# is answered UNSUPPORTED_VERSION and the connection closed.
SASL_API_VERSIONS = {SASL_HANDSHAKE_KEY: (0, 1), SASL_AUTHENTICATE_KEY: (0, 2)}
SASL_API_NAMES = {SASL_HANDSHAKE_KEY: "SaslHandshake", SASL_AUTHENTICATE_KEY: "SaslAuthenticate"}
BEFORE_AUTHENTICATION = frozenset({API_VERSIONS_KEY, SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY})


class ConnectionSasl:
    """The authentication state of one Kafka connection."""

    def __init__(self, authenticator: Authenticator, listener: str, protocol: str):
        self._authenticator = authenticator
        self._listener = listener
        self.required = protocol in SASL_PROTOCOLS
        self.principal: str | None = None if self.required else ANONYMOUS
        self.close_after_answer = False  # a failed login: answered, then the connection closes
        self._mechanism: str | None = None
        self._scram: tuple[ServerExchange, ScramCredential, bool] | None = None

    @property
    def authenticated(self) -> bool:
        return self.principal is not None

    def allows(self, api_key: int) -> bool:
        return self.authenticated or api_key in BEFORE_AUTHENTICATION

    @property
    def mechanisms(self) -> tuple[str, ...]:
        return self._authenticator.mechanisms

    async def handshake(self, request: Any, version: int) -> Any:
        types = response_types(SASL_HANDSHAKE_KEY, version)
        mechanism = str(request.mechanism).upper()
        if version == 0:
            self.close_after_answer = True
            code = ErrorCode.unsupported_version
        elif not self.required or self.authenticated or self._mechanism is not None:
            code = ErrorCode.illegal_sasl_state
        elif mechanism not in self.mechanisms:
            code = ErrorCode.unsupported_sasl_mechanism
            self._authenticator.refused(self._listener, mechanism, ANONYMOUS, "mechanism not enabled")
        else:
            code = ErrorCode.none
            self._mechanism = mechanism
        return build(types.SaslHandshakeResponse, error_code=code, mechanisms=self.mechanisms)

    def _answer(self, version: int, code: ErrorCode, message: str | None, auth_bytes: bytes) -> Any:
        types = response_types(SASL_AUTHENTICATE_KEY, version)
        return build(
            types.SaslAuthenticateResponse,
            error_code=code,
            error_message=message,
            auth_bytes=auth_bytes,
            session_lifetime=datetime.timedelta(0),  # no re-authentication (connections.max.reauth.ms=0)
        )

    def _failed(self, version: int, error: RaftlogError) -> Any:
        self.close_after_answer = True
        return self._answer(version, code_of_error(error), error.message, b"")

    async def authenticate(self, request: Any, version: int) -> Any:
        mechanism = self._mechanism
        if mechanism is None or self.authenticated:
            self.close_after_answer = True
            return self._answer(version, ErrorCode.illegal_sasl_state, "SaslAuthenticate before SaslHandshake", b"")
        auth_bytes = bytes(request.auth_bytes)
        try:
            if mechanism == "PLAIN":
                return await self._plain(version, auth_bytes)
            return self._scram_step(version, mechanism, auth_bytes)
        except RaftlogError as exc:
            return self._failed(version, exc)

    async def _plain(self, version: int, auth_bytes: bytes) -> Any:
        parts = auth_bytes.split(b"\x00")
        if len(parts) != 3:
            raise RaftlogError("SASL_AUTHENTICATION_FAILED", "malformed SASL/PLAIN message")
        authzid, user, password = (p.decode("utf-8", errors="replace") for p in parts)
        if authzid and authzid != user:
            raise RaftlogError("SASL_AUTHENTICATION_FAILED", "an authorization id other than the user is not supported")
        credentials = self._authenticator.plain_credentials(user)
        # PBKDF2 off the event loop: thousands of HMACs per credential.
        if not credentials or not await asyncio.to_thread(check_plain, credentials, password):
            self._authenticator.refused(self._listener, "PLAIN", user_principal(user), "wrong password or no such user")
            raise failed_login("PLAIN")
        self.principal = user_principal(user)
        return self._answer(version, ErrorCode.none, None, b"")

    def _scram_step(self, version: int, mechanism: str, auth_bytes: bytes) -> Any:
        if self._scram is None:
            exchange = self._authenticator.scram_first(mechanism, auth_bytes)
            credential, known = self._authenticator.credential_for(exchange)
            self._scram = (exchange, credential, known)
            return self._answer(version, ErrorCode.none, None, exchange.respond(credential))
        exchange, credential, known = self._scram
        self._scram = None
        server_final = self._authenticator.scram_final(exchange, credential, known, auth_bytes, self._listener)
        assert exchange.username is not None
        self.principal = user_principal(exchange.username)
        return self._answer(version, ErrorCode.none, None, server_final)
