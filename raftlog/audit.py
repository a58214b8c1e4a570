"""The audit trail: one log line (logger ``raftlog.audit``) and one metric count per refused
authentication, per credential change, per authorization refusal and per ACL change, each with the
principal, the operation and the resource. The one module that writes the audit logger.

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


# -- authorization (raftlog/api/authorization.py) ---------------------------------------------------


def authorization_refused(
    metrics, principal: str, host: str, operation: str, resource: str, api: str, reason: str
) -> None:
    """A request (or some of its partitions) refused by the authorizer: ``resource`` is
    ``<type>:<name>`` (Topic:orders, Group:g, Cluster:kafka-cluster), ``reason`` the decision's
    (no ALLOW binding, a DENY binding, ...). Leaving a resource out of a listing is not logged."""
    log.info(
        "audit: refused principal=%s operation=%s resource=%s host=%s api=%s reason=%r",
        principal,
        operation,
        resource,
        host,
        api,
        reason,
    )
    if metrics is not None:
        resource_type = resource.partition(":")[0]
        metrics.authorization_refused(api, operation, resource_type)


def acls_changed(metrics, principal: str, host: str, change: str, bindings) -> None:
    """ACL bindings added or removed (``change``: added, removed) through this node, one line each."""
    for binding in bindings:
        log.info("audit: allowed principal=%s operation=acl-%s host=%s binding=%s", principal, change, host, binding)
    if metrics is not None and bindings:
        metrics.acls_changed(change, len(bindings))
