"""SASL authentication on a node: SCRAM logins and SASL/PLAIN checked against the SCRAM
credentials in the metadata image, and the session tokens gRPC clients carry afterwards.

Owns: the server side of SCRAM exchanges (state between the two steps, bounded in number and
time: raftlog/limits.py), PLAIN password checks, and making and checking session tokens. Not the
transport: the gRPC edge (raftlog/api/sasl_service.py: the SaslService and the interceptor that
checks every call's token) and the Kafka listener (raftlog/kafka/sasl.py: SaslHandshake and
SaslAuthenticate on one connection) call it. The math is raftlog/scram.py.

Why tokens for gRPC: a gRPC call has no connection of its own to authenticate once, as Kafka's
SASL does; logging in per call would cost a PBKDF2 and two round trips each. So a client runs one
SCRAM exchange (its password never leaves it, and it checks the server's signature, so a fake
server learns nothing either) and gets a token good for ``sasl.session.token.lifetime.ms`` on every
node: the token is MAC'd with a key derived from the user's ServerKey, which every node has in its
image, so a call costs one HMAC (then a dict lookup) and a credential change or deletion voids
every token made from it at once. The token is sent inside TLS (SASL_SSL); over SASL_PLAINTEXT,
which an operator chooses by its name, an eavesdropper could replay it until it expires.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from raftlog import audit
from raftlog.errors import RaftlogError
from raftlog.limits import SASL_EXCHANGE_TIMEOUT_S, SASL_MAX_PENDING_EXCHANGES, SASL_VERIFIED_TOKENS_MAX
from raftlog.metadata.image import MetadataImage
from raftlog.principals import ANONYMOUS, user_principal
from raftlog.sasl_login import TOKEN_METADATA_KEY
from raftlog.scram import (
    MECHANISMS,
    ScramCredential,
    ScramError,
    ServerExchange,
    decoy_credential,
    make_token,
    password_matches,
    read_token,
    token_valid,
)

__all__ = ["TOKEN_METADATA_KEY", "Authenticator", "LoginResult", "check_plain", "failed_login"]


def _wall_ms() -> int:
    return int(time.time() * 1000)


def failed_login(mechanism: str) -> RaftlogError:
    """What a client is told about any failed login (Kafka's words): nothing about which part was wrong."""
    return RaftlogError(
        "SASL_AUTHENTICATION_FAILED",
        f"Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}",
    )


@dataclass(eq=False)
class _Pending:
    exchange: ServerExchange
    known_user: bool  # False: the credential answered with is a decoy, the login fails at the end
    credential: ScramCredential
    started_s: float


@dataclass(frozen=True, slots=True)
class LoginResult:
    server_final: bytes
    principal: str
    token: str
    lifetime_ms: int


class Authenticator:
    """One per node, shared by its listeners."""

    def __init__(
        self,
        image: Callable[[], MetadataImage],
        mechanisms: tuple[str, ...],
        token_lifetime_ms: int,
        metrics=None,
        wall_ms: Callable[[], int] = _wall_ms,
        monotonic_s: Callable[[], float] = time.monotonic,
    ):
        self._image = image
        self.mechanisms = mechanisms
        self.scram_mechanisms = tuple(m for m in mechanisms if m in MECHANISMS)
        self.token_lifetime_ms = token_lifetime_ms
        self.metrics = metrics
        self._wall_ms = wall_ms
        self._monotonic_s = monotonic_s
        self._secret = secrets.token_bytes(32)  # for decoy salts of unknown users
        self._pending: dict[str, _Pending] = {}
        # token -> (principal, expiry ms, the credential it was checked against)
        self._verified: OrderedDict[str, tuple[str, int, ScramCredential]] = OrderedDict()

    def refused(self, listener: str, mechanism: str, principal: str, reason: str) -> None:
        audit.authentication_refused(self.metrics, listener, mechanism, principal, f"listener:{listener}", reason)

    def _check_mechanism(self, mechanism: str) -> None:
        if mechanism not in self.scram_mechanisms:
            raise RaftlogError(
                "UNSUPPORTED_SASL_MECHANISM",
                f"{mechanism or 'no mechanism'} is not offered here; enabled: {', '.join(self.scram_mechanisms)}",
            )

    # -- SCRAM ------------------------------------------------------------------------------

    def scram_first(self, mechanism: str, client_first: bytes) -> ServerExchange:
        """Reads the client-first-message and answers it (with a decoy credential for an unknown
        user). Raises UNSUPPORTED_SASL_MECHANISM, or SASL_AUTHENTICATION_FAILED for a malformed one."""
        self._check_mechanism(mechanism)
        exchange = ServerExchange(mechanism)
        try:
            exchange.first(client_first)
        except ScramError as exc:
            raise RaftlogError("SASL_AUTHENTICATION_FAILED", f"malformed SCRAM message: {exc}") from None
        return exchange

    def credential_for(self, exchange: ServerExchange) -> tuple[ScramCredential, bool]:
        assert exchange.username is not None, "first() names the user"
        credential = self._image().scram_credential(exchange.username, exchange.mech.name)
        if credential is None:
            return decoy_credential(exchange.mech.name, exchange.username, self._secret), False
        return credential, True

    def scram_final(
        self,
        exchange: ServerExchange,
        credential: ScramCredential,
        known_user: bool,
        client_final: bytes,
        listener: str,
    ) -> bytes:
        """server-final-message, or SASL_AUTHENTICATION_FAILED (audited)."""
        assert exchange.username is not None
        try:
            server_final = exchange.final(client_final)
            if not known_user:
                raise ScramError("no such user")
        except ScramError as exc:
            self.refused(listener, exchange.mech.name, user_principal(exchange.username), str(exc))
            raise failed_login(exchange.mech.name) from None
        return server_final

    # -- the gRPC flavour: the state waits on the node between the two calls -------------------

    def _expire_pending(self) -> None:
        now_s = self._monotonic_s()
        for exchange_id in [i for i, p in self._pending.items() if now_s - p.started_s > SASL_EXCHANGE_TIMEOUT_S]:
            del self._pending[exchange_id]

    def grpc_first(self, mechanism: str, client_first: bytes, listener: str) -> tuple[str, bytes]:
        """(exchange id, server-first-message)."""
        try:
            exchange = self.scram_first(mechanism, client_first)
        except RaftlogError as exc:
            self.refused(listener, mechanism, ANONYMOUS, exc.message)
            raise
        self._expire_pending()
        if len(self._pending) >= SASL_MAX_PENDING_EXCHANGES:
            raise RaftlogError("ILLEGAL_SASL_STATE", "too many logins in progress on this node; retry")
        credential, known = self.credential_for(exchange)
        exchange_id = secrets.token_urlsafe(18)
        self._pending[exchange_id] = _Pending(exchange, known, credential, self._monotonic_s())
        return exchange_id, exchange.respond(credential)

    def grpc_final(self, mechanism: str, exchange_id: str, client_final: bytes, listener: str) -> LoginResult:
        self._expire_pending()
        pending = self._pending.pop(exchange_id, None)
        if pending is None or pending.exchange.mech.name != mechanism:
            raise RaftlogError(
                "ILLEGAL_SASL_STATE", "no login in progress with that id on this node (expired, or another node)"
            )
        exchange = pending.exchange
        server_final = self.scram_final(exchange, pending.credential, pending.known_user, client_final, listener)
        assert exchange.username is not None
        expires_at_ms = self._wall_ms() + self.token_lifetime_ms
        token = make_token(exchange.username, pending.credential, expires_at_ms)
        return LoginResult(server_final, user_principal(exchange.username), token, self.token_lifetime_ms)

    def token_principal(self, token: str | None, listener: str) -> str:
        """The principal a call's session token names; SASL_AUTHENTICATION_FAILED (audited) when
        there is none or it is not good (forged, expired, its credential changed or deleted)."""
        if not token:
            reason = "no SASL session token: this listener needs a SASL login (security.protocol=SASL_SSL)"
            self.refused(listener, "", ANONYMOUS, reason)
            raise RaftlogError(
                "SASL_AUTHENTICATION_FAILED",
                f"listener {listener} needs SASL authentication: set security.protocol=SASL_SSL (or SASL_PLAINTEXT), "
                "sasl.mechanism, sasl.username and sasl.password",
            )
        now_ms = self._wall_ms()
        image = self._image()
        cached = self._verified.get(token)
        if cached is not None:
            principal, expires_at_ms, credential = cached
            name = principal[len("User:") :]
            current = image.scram_credential(name, credential.mechanism)
            if current is credential and now_ms < expires_at_ms:
                return principal
            del self._verified[token]
        try:
            claim = read_token(token)
        except ScramError as exc:
            self.refused(listener, "", ANONYMOUS, str(exc))
            raise RaftlogError("SASL_AUTHENTICATION_FAILED", "the session token is not valid; log in again") from None
        stored = image.scram_credential(claim.username, claim.mechanism)
        why = token_valid(claim, stored, now_ms)
        if why is not None:
            self.refused(listener, claim.mechanism, user_principal(claim.username), why)
            raise RaftlogError("SASL_AUTHENTICATION_FAILED", f"the session token is not valid ({why}); log in again")
        assert stored is not None
        principal = user_principal(claim.username)
        self._verified[token] = (principal, claim.expires_at_ms, stored)
        if len(self._verified) > SASL_VERIFIED_TOKENS_MAX:
            self._verified.popitem(last=False)
        return principal

    # -- SASL/PLAIN (Kafka listener) ---------------------------------------------------------

    def plain_credentials(self, username: str) -> list[ScramCredential]:
        image = self._image()
        return [c for m in MECHANISMS if (c := image.scram_credential(username, m)) is not None]


def check_plain(credentials: list[ScramCredential], password: str) -> bool:
    """SASL/PLAIN's password against any of the user's SCRAM credentials (a PBKDF2: run it off the
    event loop)."""
    return any(password_matches(credential, password) for credential in credentials)
