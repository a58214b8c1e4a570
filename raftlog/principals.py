"""Principals: the name a caller acts under (``User:<name>``), from a certificate's distinguished
name by Kafka's ``ssl.principal.mapping.rules`` or from a SASL login, and the one way code serving
a request asks for it: ``request_principal``. Pure (no grpc, no I/O): raftlog/tls.py reads the
certificate, raftlog/authentication.py checks SASL session tokens; this module names principals
and carries the principal of the request being served.

Where the principal comes from, per listener security protocol (``listener.security.protocol.map``):
PLAINTEXT: ``User:ANONYMOUS``; SSL: the client certificate's, by the mapping rules (ANONYMOUS
without a certificate); SASL_SSL / SASL_PLAINTEXT: ``User:<name>`` of the SCRAM login (a call
without a valid session token is refused before any servicer runs). The gRPC listener's interceptor
(raftlog/authentication.py) and the Kafka connection (raftlog/kafka/server.py) set it around each
request they serve.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

ANONYMOUS = "User:ANONYMOUS"
USER_PREFIX = "User:"

# Set by the listener serving the request (None: no listener set one: a PLAINTEXT listener).
_REQUEST_PRINCIPAL: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "raftlog_request_principal", default=None
)


class _Identified(Protocol):
    principal: str


class _IdentitySource(Protocol):
    def identity(self, context) -> _Identified: ...


def request_principal(context: object | None = None, authenticator: _IdentitySource | None = None) -> str:
    """The principal (``User:<name>``) of the request being served: the one function for it
    (authorization asks only this).

    The listener that received the request set it before any servicer ran (``serving_as``): the
    SCRAM login's user on SASL_* listeners, the client certificate's principal on SSL ones. When no
    listener set one (a PLAINTEXT gRPC listener, a call outside a request) it is the certificate's
    principal if ``authenticator`` (raftlog.tls.PeerAuthenticator) and ``context`` (a gRPC
    ServicerContext) are given, else ``User:ANONYMOUS``, as Kafka's PLAINTEXT principal. The Kafka
    listener's handlers pass ``context=None``."""
    principal = _REQUEST_PRINCIPAL.get()
    if principal is not None:
        return principal
    if authenticator is not None and context is not None:
        return authenticator.identity(context).principal
    return ANONYMOUS


@contextmanager
def serving_as(principal: str) -> Iterator[None]:
    """Runs the request's handling as ``principal`` (listeners only: they have authenticated it)."""
    assert principal.startswith(USER_PREFIX), f"principal {principal!r} is not User:<name>"
    token = _REQUEST_PRINCIPAL.set(principal)
    try:
        yield
    finally:
        _REQUEST_PRINCIPAL.reset(token)


def user_principal(name: str) -> str:
    return f"{USER_PREFIX}{name}"


def parse_super_users(text: str | None) -> frozenset[str]:
    """Kafka's ``super.users``: principals separated by ``;`` (a DN may hold commas)."""
    return frozenset(p.strip() for p in (text or "").split(";") if p.strip())


DEFAULT_MAPPING_RULES = "RULE:^CN=([^,]*).*$/$1/,DEFAULT"


class PrincipalRuleError(ValueError):
    """A mapping rule that cannot be read; the message is one line for an operator."""


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern | None  # None: DEFAULT (the whole distinguished name)
    replacement: str
    case: str  # "", "L" or "U"


class PrincipalMapper:
    """Kafka's ``ssl.principal.mapping.rules``: ``RULE:regex/replacement/[LU]`` entries and
    ``DEFAULT``, tried in order on the certificate's RFC 4514 distinguished name (``CN=alice,O=x``);
    the first that matches gives the name. raftlog's default takes the CN, then falls back to the DN."""

    _RULE = re.compile(r"RULE:((?:\\/|[^/])*)/((?:\\/|[^/])*)/([LU]?)")

    def __init__(self, rules: str = DEFAULT_MAPPING_RULES):
        self.rules: list[_Rule] = []
        rest = rules.strip()
        while rest:
            if rest.startswith("DEFAULT"):
                self.rules.append(_Rule(None, "", ""))
                rest = rest[len("DEFAULT") :]
            else:
                match = self._RULE.match(rest)
                if match is None:
                    raise PrincipalRuleError(f"ssl.principal.mapping.rules: cannot read {rest!r}")
                try:
                    pattern = re.compile(match.group(1).replace("\\/", "/"))
                except re.error as exc:
                    raise PrincipalRuleError(f"ssl.principal.mapping.rules: {match.group(1)!r}: {exc}") from None
                replacement = re.sub(r"\$(\d)", r"\\\1", match.group(2).replace("\\/", "/"))
                self.rules.append(_Rule(pattern, replacement, match.group(3)))
                rest = rest[match.end() :]
            rest = rest.strip()
            if rest.startswith(","):
                rest = rest[1:].strip()
            elif rest:
                raise PrincipalRuleError(f"ssl.principal.mapping.rules: expected ',' before {rest!r}")
        if not self.rules:
            raise PrincipalRuleError("ssl.principal.mapping.rules is empty")

    def name(self, distinguished_name: str) -> str | None:
        for rule in self.rules:
            if rule.pattern is None:
                return distinguished_name
            if rule.pattern.fullmatch(distinguished_name) is None:
                continue
            name = rule.pattern.sub(rule.replacement, distinguished_name, count=1)
            return name.lower() if rule.case == "L" else name.upper() if rule.case == "U" else name
        return None  # Kafka: no rule applies is an error; here, the caller sees an anonymous peer
