"""ACL bindings and filters in Kafka's model (kafka-acls, AclBinding, AclBindingFilter). Pure.

A binding says that a principal (``User:alice``, ``User:*`` for everyone) from a host (``*`` for
every host) is allowed or denied an operation on resources: those of one type whose name equals
the binding's (LITERAL; ``*`` is every resource of the type) or starts with it (PREFIXED). The
cluster resource is named ``kafka-cluster``, as in Kafka.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from raftlog.errors import RaftlogError
from raftlog.v1 import acls_pb2

CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"  # a LITERAL resource name, principal name or host matching every one
WILDCARD_PRINCIPAL = "User:*"


def _key(text: str) -> str:
    return text.replace("_", "").replace("-", "").lower()


class _Named(enum.Enum):
    """Kafka's names: parsed case-insensitively with or without separators (Read, cluster-action, IDEMPOTENT_WRITE)."""

    @classmethod
    def parse(cls, text: str):
        for member in cls:
            if _key(member.name) == _key(text):
                return member
        names = ", ".join(member.kafka_name for member in cls)
        raise RaftlogError("INVALID_REQUEST", f"{text!r} is not one of {names}")

    @property
    def kafka_name(self) -> str:
        """Kafka's spelling: ClusterAction, Read, Topic, Prefixed."""
        return "".join(part.capitalize() for part in self.name.split("_"))

    def to_pb(self) -> Any:  # the protobuf enum type of the field
        """The member's value is its protobuf enum number (raftlog.v1.acls_pb2)."""
        return self.value

    @classmethod
    def from_pb(cls, value: int):
        try:
            return cls(value)
        except ValueError:
            raise RaftlogError("INVALID_REQUEST", f"{cls.__name__} {value} is not known") from None


class ResourceType(_Named):
    ANY = acls_pb2.ACL_RESOURCE_ANY
    TOPIC = acls_pb2.TOPIC
    GROUP = acls_pb2.GROUP
    CLUSTER = acls_pb2.CLUSTER
    TRANSACTIONAL_ID = acls_pb2.TRANSACTIONAL_ID


class PatternType(_Named):
    ANY = acls_pb2.ACL_PATTERN_ANY
    MATCH = acls_pb2.ACL_PATTERN_MATCH
    LITERAL = acls_pb2.LITERAL
    PREFIXED = acls_pb2.PREFIXED


class Operation(_Named):
    ANY = acls_pb2.ACL_OPERATION_ANY
    ALL = acls_pb2.ALL
    READ = acls_pb2.READ
    WRITE = acls_pb2.WRITE
    CREATE = acls_pb2.CREATE
    DELETE = acls_pb2.DELETE
    ALTER = acls_pb2.ALTER
    DESCRIBE = acls_pb2.DESCRIBE
    CLUSTER_ACTION = acls_pb2.CLUSTER_ACTION
    DESCRIBE_CONFIGS = acls_pb2.DESCRIBE_CONFIGS
    ALTER_CONFIGS = acls_pb2.ALTER_CONFIGS
    IDEMPOTENT_WRITE = acls_pb2.IDEMPOTENT_WRITE


class Permission(_Named):
    ANY = acls_pb2.ACL_PERMISSION_ANY
    DENY = acls_pb2.DENY
    ALLOW = acls_pb2.ALLOW


# Kafka's AclEntry.supportedOperations: what a binding on each resource type may name.
SUPPORTED_OPERATIONS: dict[ResourceType, frozenset[Operation]] = {
    ResourceType.TOPIC: frozenset(
        {
            Operation.ALL,
            Operation.READ,
            Operation.WRITE,
            Operation.CREATE,
            Operation.DELETE,
            Operation.ALTER,
            Operation.DESCRIBE,
            Operation.DESCRIBE_CONFIGS,
            Operation.ALTER_CONFIGS,
        }
    ),
    ResourceType.GROUP: frozenset({Operation.ALL, Operation.READ, Operation.DESCRIBE, Operation.DELETE}),
    ResourceType.CLUSTER: frozenset(
        {
            Operation.ALL,
            Operation.CREATE,
            Operation.CLUSTER_ACTION,
            Operation.DESCRIBE_CONFIGS,
            Operation.ALTER_CONFIGS,
            Operation.IDEMPOTENT_WRITE,
            Operation.ALTER,
            Operation.DESCRIBE,
        }
    ),
    ResourceType.TRANSACTIONAL_ID: frozenset({Operation.ALL, Operation.DESCRIBE, Operation.WRITE}),
}


@dataclass(frozen=True, slots=True)
class AclBinding:
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    def validate(self) -> None:
        """INVALID_REQUEST unless this binding can be stored (no ANY or MATCH, Kafka's rules)."""
        if self.resource_type is ResourceType.ANY or self.pattern_type in (PatternType.ANY, PatternType.MATCH):
            raise RaftlogError("INVALID_REQUEST", f"{self}: a binding names one resource type and LITERAL or PREFIXED")
        if self.operation is Operation.ANY or self.permission is Permission.ANY:
            raise RaftlogError("INVALID_REQUEST", f"{self}: a binding names one operation and ALLOW or DENY")
        if not self.resource_name:
            raise RaftlogError("INVALID_REQUEST", f"{self}: the resource name is empty")
        if self.resource_type is ResourceType.CLUSTER and (
            self.resource_name != CLUSTER_NAME or self.pattern_type is not PatternType.LITERAL
        ):
            raise RaftlogError("INVALID_REQUEST", f"{self}: the cluster resource is the literal {CLUSTER_NAME!r}")
        if self.pattern_type is PatternType.PREFIXED and self.resource_name == WILDCARD:
            raise RaftlogError("INVALID_REQUEST", f"{self}: '*' is a LITERAL wildcard, not a prefix")
        kind, _, name = self.principal.partition(":")
        if not kind or not name:
            raise RaftlogError("INVALID_REQUEST", f"{self}: a principal is TYPE:NAME, such as User:alice")
        if not self.host:
            raise RaftlogError("INVALID_REQUEST", f"{self}: the host is empty ('*' is every host)")
        if self.operation not in SUPPORTED_OPERATIONS[self.resource_type]:
            raise RaftlogError(
                "INVALID_REQUEST",
                f"{self}: {self.operation.kafka_name} is not an operation on a {self.resource_type.kafka_name}",
            )

    def applies_to(self, resource_type: ResourceType, name: str) -> bool:
        """Whether this binding covers the resource (its type, and its name by the pattern)."""
        if resource_type is not self.resource_type:
            return False
        if self.pattern_type is PatternType.PREFIXED:
            return name.startswith(self.resource_name)
        return self.resource_name in (name, WILDCARD)

    def __str__(self) -> str:
        return (
            f"(principal={self.principal}, host={self.host}, operation={self.operation.kafka_name}, "
            f"permission={self.permission.kafka_name}) on {self.resource_type.kafka_name}:"
            f"{self.pattern_type.kafka_name}:{self.resource_name}"
        )

    def to_pb(self) -> acls_pb2.AclBinding:
        return acls_pb2.AclBinding(
            resource_type=self.resource_type.to_pb(),
            resource_name=self.resource_name,
            pattern_type=self.pattern_type.to_pb(),
            principal=self.principal,
            host=self.host,
            operation=self.operation.to_pb(),
            permission=self.permission.to_pb(),
        )

    @classmethod
    def from_pb(cls, pb: acls_pb2.AclBinding) -> AclBinding:
        return cls(
            ResourceType.from_pb(pb.resource_type),
            pb.resource_name,
            PatternType.from_pb(pb.pattern_type),
            pb.principal,
            pb.host,
            Operation.from_pb(pb.operation),
            Permission.from_pb(pb.permission),
        )


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Kafka's AclBindingFilter: ANY (or None for a string) matches every value of that field;
    pattern MATCH matches every binding that applies to the named resource (literal, ``*``, prefixes)."""

    resource_type: ResourceType = ResourceType.ANY
    resource_name: str | None = None
    pattern_type: PatternType = PatternType.ANY
    principal: str | None = None
    host: str | None = None
    operation: Operation = Operation.ANY
    permission: Permission = Permission.ANY

    def matches(self, binding: AclBinding) -> bool:
        if self.resource_type is not ResourceType.ANY and binding.resource_type is not self.resource_type:
            return False
        if self.pattern_type is PatternType.MATCH:
            if self.resource_name is not None and not binding.applies_to(binding.resource_type, self.resource_name):
                return False
        else:
            if self.pattern_type is not PatternType.ANY and binding.pattern_type is not self.pattern_type:
                return False
            if self.resource_name is not None and binding.resource_name != self.resource_name:
                return False
        return (
            (self.principal is None or binding.principal == self.principal)
            and (self.host is None or binding.host == self.host)
            and (self.operation is Operation.ANY or binding.operation is self.operation)
            and (self.permission is Permission.ANY or binding.permission is self.permission)
        )

    def to_pb(self) -> acls_pb2.AclBindingFilter:
        pb = acls_pb2.AclBindingFilter(
            resource_type=self.resource_type.to_pb(),
            pattern_type=self.pattern_type.to_pb(),
            operation=self.operation.to_pb(),
            permission=self.permission.to_pb(),
        )
        for name in ("resource_name", "principal", "host"):
            if getattr(self, name) is not None:
                setattr(pb, name, getattr(self, name))
        return pb

    @classmethod
    def from_pb(cls, pb: acls_pb2.AclBindingFilter) -> AclFilter:
        def enum_or_any(kind, value):
            return kind.ANY if value == 0 else kind.from_pb(value)

        return cls(
            enum_or_any(ResourceType, pb.resource_type),
            pb.resource_name if pb.HasField("resource_name") else None,
            enum_or_any(PatternType, pb.pattern_type),
            pb.principal if pb.HasField("principal") else None,
            pb.host if pb.HasField("host") else None,
            enum_or_any(Operation, pb.operation),
            enum_or_any(Permission, pb.permission),
        )
