"""Principals: the name a caller acts under (``User:<name>``), from a certificate's distinguished
name by Kafka's ``ssl.principal.mapping.rules``. Pure (no grpc, no I/O): raftlog/tls.py reads the
certificate, this module names it (``request_principal``); authorization (ACLs) asks only that
function, and SCRAM users will use the same ``User:<name>`` form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

ANONYMOUS = "User:ANONYMOUS"
DEFAULT_MAPPING_RULES = "RULE:^CN=([^,]*).*$/$1/,DEFAULT"


class _Identified(Protocol):
    principal: str


class _IdentitySource(Protocol):
    def identity(self, context) -> _Identified: ...


def request_principal(context, authenticator: _IdentitySource) -> str:
    """The principal a request acts under, the one place that says it (authorization asks only
    this): ``User:<name>`` from the client certificate by ``ssl.principal.mapping.rules`` (the
    authenticator is raftlog.tls.PeerAuthenticator), ``User:ANONYMOUS`` without one, as Kafka."""
    return authenticator.identity(context).principal


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
