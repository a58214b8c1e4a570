"""The audit trail: one log line (logger ``raftlog.audit``) and one metric count per refused
authentication and per credential change, each with the principal, the operation and the resource.

Lines are ``audit: <outcome> principal=<p> operation=<op> resource=<r> [reason=...]``; no secret
is ever part of one (user names are, passwords and keys never).
"""

from __future__ import annotations

import logging

log = logging.getLogger("raftlog.audit")


def authentication_refused(metrics, listener: str, mechanism: str, principal: str, resource: str, reason: str) -> None:
    """A login or a call refused for want of valid credentials. ``principal`` is who it claimed to
    be (``User:<name>``, or ``User:ANONYMOUS`` when it named no one)."""
    log.warning(
        "audit: refused principal=%s operation=Authenticate resource=%s listener=%s mechanism=%s reason=%r",
        principal,
        resource,
        listener,
        mechanism or "-",
        reason,
    )
    if metrics is not None:
        metrics.authentication_failures.labels(listener, mechanism or "none").inc()


def credential_changed(metrics, principal: str, operation: str, user: str, mechanism: str) -> None:
    """A SCRAM credential set (``operation`` AlterUserScramCredentials/upsert) or deleted, once committed."""
    log.info(
        "audit: allowed principal=%s operation=%s resource=User:%s mechanism=%s", principal, operation, user, mechanism
    )
    if metrics is not None:
        metrics.credential_changes.labels(operation).inc()


def credential_change_refused(metrics, principal: str, operation: str, resource: str, reason: str) -> None:
    log.warning(
        "audit: refused principal=%s operation=%s resource=%s reason=%r", principal, operation, resource, reason
    )
    if metrics is not None:
        metrics.credential_changes.labels(f"{operation}-refused").inc()
