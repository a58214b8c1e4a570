"""The authorizer: may this principal, from this host, do this operation on this resource? Pure
(no I/O), in the manner of Kafka's StandardAuthorizer:

- a super user (``super.users``) may do everything;
- a node (a caller whose mutual-TLS certificate names a node id) may do ClusterAction;
- a DENY binding that applies wins over any ALLOW;
- an ALLOW binding for the operation, for All, or for an operation that implies it (Describe is
  implied by Read, Write, Delete and Alter; DescribeConfigs by AlterConfigs) allows;
- when no binding at all applies to the resource (any principal), ``allow.everyone.if.no.acl.found``
  decides (false by default, so authorization on means deny unless allowed).

A binding applies to a caller when its principal is the caller's or ``User:*`` and its host is the
caller's or ``*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from raftlog.authorizer.acls import (
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AclBinding,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from raftlog.limits import AUTHORIZER_MEMO_ENTRIES

# Kafka's implied operations: an ALLOW of the key allows the values too.
IMPLIED: dict[Operation, frozenset[Operation]] = {
    Operation.READ: frozenset({Operation.DESCRIBE}),
    Operation.WRITE: frozenset({Operation.DESCRIBE}),
    Operation.DELETE: frozenset({Operation.DESCRIBE}),
    Operation.ALTER: frozenset({Operation.DESCRIBE}),
    Operation.ALTER_CONFIGS: frozenset({Operation.DESCRIBE_CONFIGS}),
}


@dataclass(frozen=True, slots=True)
class AuthorizerSettings:
    enabled: bool = False
    super_users: frozenset[str] = frozenset()
    allow_everyone_if_no_acl_found: bool = False


@dataclass(frozen=True, slots=True)
class Caller:
    principal: str
    host: str
    is_node: bool = False  # its certificate names a node id (mutual TLS between nodes)
    forwarded: bool = False  # a node forwarding a request it has authorized (Kafka's EnvelopeRequest)


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    why: str  # for the audit log: "super user", "DENY (...)", "no ALLOW binding", ...


def _allows(binding_operation: Operation, operation: Operation) -> bool:
    return binding_operation in (operation, Operation.ALL) or operation in IMPLIED.get(binding_operation, ())


class Authorizer:
    """Answers from a fixed set of bindings (the ones in one metadata image); build a new one when
    they change. Bindings are indexed by literal name, wildcard and prefix, and answers are
    remembered (up to AUTHORIZER_MEMO_ENTRIES, then forgotten all at once), so the check on a
    produce or fetch is a dictionary lookup."""

    def __init__(self, settings: AuthorizerSettings, bindings: Iterable[AclBinding]):
        self.settings = settings
        self._by_type: dict[ResourceType, list[AclBinding]] = {}
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._wildcard: dict[ResourceType, list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}
        for binding in bindings:
            kind = binding.resource_type
            self._by_type.setdefault(kind, []).append(binding)
            if binding.pattern_type is PatternType.PREFIXED:
                self._prefixed.setdefault(kind, []).append(binding)
            elif binding.resource_name == WILDCARD:
                self._wildcard.setdefault(kind, []).append(binding)
            else:
                self._literal.setdefault((kind, binding.resource_name), []).append(binding)
        self._memo: dict[tuple[Caller, Operation, ResourceType, str], Decision] = {}

    def _applies_to_caller(self, binding: AclBinding, caller: Caller) -> bool:
        return binding.principal in (caller.principal, WILDCARD_PRINCIPAL) and binding.host in (caller.host, WILDCARD)

    def _on_resource(self, resource_type: ResourceType, name: str) -> list[AclBinding]:
        found = list(self._literal.get((resource_type, name), ()))
        found += self._wildcard.get(resource_type, ())
        found += (b for b in self._prefixed.get(resource_type, ()) if name.startswith(b.resource_name))
        return found

    def authorize(self, caller: Caller, operation: Operation, resource_type: ResourceType, name: str) -> Decision:
        assert operation not in (Operation.ANY, Operation.ALL), f"a request asks for one operation, not {operation}"
        key = (caller, operation, resource_type, name)
        decision = self._memo.get(key)
        if decision is None:
            decision = self._authorize(caller, operation, resource_type, name)
            if len(self._memo) >= AUTHORIZER_MEMO_ENTRIES:
                self._memo.clear()
            self._memo[key] = decision
        return decision

    def _authorize(self, caller: Caller, operation: Operation, resource_type: ResourceType, name: str) -> Decision:
        if not self.settings.enabled:
            return Decision(True, "authorization is off")
        if caller.principal in self.settings.super_users:
            return Decision(True, "super user")
        if caller.is_node and operation is Operation.CLUSTER_ACTION and resource_type is ResourceType.CLUSTER:
            return Decision(True, "a node's certificate")
        on_resource = self._on_resource(resource_type, name)
        if not on_resource:
            allowed = self.settings.allow_everyone_if_no_acl_found
            return Decision(
                allowed, "no binding on the resource; allow.everyone.if.no.acl.found=" + str(allowed).lower()
            )
        mine = [b for b in on_resource if self._applies_to_caller(b, caller)]
        for binding in mine:
            if binding.permission is Permission.DENY and binding.operation in (operation, Operation.ALL):
                return Decision(False, f"denied by {binding}")
        for binding in mine:
            if binding.permission is Permission.ALLOW and _allows(binding.operation, operation):
                return Decision(True, f"allowed by {binding}")
        return Decision(False, "no binding allows it")

    def authorize_any(self, caller: Caller, operation: Operation, resource_type: ResourceType) -> Decision:
        """Whether the caller may do `operation` on at least one resource of the type (Kafka's
        authorizeByResourceType, which InitProducerId uses: Write on any topic)."""
        if not self.settings.enabled:
            return Decision(True, "authorization is off")
        if caller.principal in self.settings.super_users:
            return Decision(True, "super user")
        bindings = self._by_type.get(resource_type, ())
        if not bindings and self.settings.allow_everyone_if_no_acl_found:
            return Decision(True, "no binding on the type; allow.everyone.if.no.acl.found=true")
        for binding in bindings:
            if binding.permission is Permission.ALLOW and self._applies_to_caller(binding, caller):
                if _allows(binding.operation, operation):
                    decision = self.authorize(caller, operation, resource_type, binding.resource_name)
                    if decision.allowed:
                        return decision
        return Decision(False, f"no binding allows {operation.kafka_name} on any {resource_type.kafka_name}")
