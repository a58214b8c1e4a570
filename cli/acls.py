"""`raftlog acls add|list|remove`, like kafka-acls (--add, --list, --remove) with its options.

Bindings are built as kafka-acls builds them: every resource named (--topic, --group, --cluster,
--transactional-id, each repeatable) times every principal (--allow-principal / --deny-principal)
times every host (--allow-host / --deny-host, default ``*``) times every --operation (default All
for add). --resource-pattern-type is literal (the default), prefixed, or for list and remove also
match (every binding that applies to the named resources) or any. `add --producer` / `--consumer`
grant what kafka-acls' shortcuts grant.
"""

from __future__ import annotations

import click

from cli.output import admin_call, bootstrap_option, emit, fail, format_table, output_option
from raftlog.authorizer.acls import (
    CLUSTER_NAME,
    WILDCARD,
    AclBinding,
    AclFilter,
    Operation,
    PatternType,
    Permission,
    ResourceType,
)
from raftlog.errors import RaftlogError

PATTERN_TYPES = ["literal", "prefixed", "match", "any"]


def _resource_options(func):
    options = [
        click.option("--topic", "topics", multiple=True, help="Topic name (repeatable; '*' is every topic)."),
        click.option("--group", "groups", multiple=True, help="Consumer group id (repeatable; '*' is every group)."),
        click.option("--cluster", is_flag=True, help="The cluster resource (kafka-cluster)."),
        click.option("--transactional-id", "transactional_ids", multiple=True, help="Transactional id (repeatable)."),
        click.option(
            "--resource-pattern-type",
            "pattern_type",
            type=click.Choice(PATTERN_TYPES, case_sensitive=False),
            default="literal",
            show_default=True,
            help="How resource names match: literal, prefixed (list/remove also: match, any).",
        ),
        click.option(
            "--operation", "operations", multiple=True, help="Read, Write, Create, Delete, Alter, Describe, ..."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _principal_options(func):
    options = [
        click.option("--allow-principal", "allow_principals", multiple=True, help="User:alice (repeatable)."),
        click.option("--deny-principal", "deny_principals", multiple=True, help="User:mallory (repeatable)."),
        click.option("--allow-host", "allow_hosts", multiple=True, help="Host of allowed principals (default *)."),
        click.option("--deny-host", "deny_hosts", multiple=True, help="Host of denied principals (default *)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resources(topics, groups, cluster, transactional_ids) -> list[tuple[ResourceType, str]]:
    resources = [(ResourceType.TOPIC, t) for t in topics] + [(ResourceType.GROUP, g) for g in groups]
    resources += [(ResourceType.TRANSACTIONAL_ID, t) for t in transactional_ids]
    if cluster:
        resources.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return resources


def _operations(texts, default: Operation) -> list[Operation]:
    try:
        return [Operation.parse(text) for text in texts] or [default]
    except RaftlogError as exc:
        fail(f"--operation: {exc.message}")
        raise  # not reached


def _entries(allow_principals, deny_principals, allow_hosts, deny_hosts) -> list[tuple[str, str, Permission]]:
    entries = [(p, h, Permission.ALLOW) for p in allow_principals for h in (allow_hosts or (WILDCARD,))]
    entries += [(p, h, Permission.DENY) for p in deny_principals for h in (deny_hosts or (WILDCARD,))]
    return entries


def _binding_dict(binding: AclBinding) -> dict:
    return {
        "resource_type": binding.resource_type.name,
        "resource_name": binding.resource_name,
        "pattern_type": binding.pattern_type.name,
        "principal": binding.principal,
        "host": binding.host,
        "operation": binding.operation.kafka_name,
        "permission": binding.permission.name,
    }


def _bindings_text(title: str):
    def text(data) -> str:
        if not data["bindings"]:
            return f"{title}: none"
        rows = [
            (
                b["resource_type"],
                b["resource_name"],
                b["pattern_type"],
                b["principal"],
                b["host"],
                b["operation"],
                b["permission"],
            )
            for b in data["bindings"]
        ]
        headers = ["RESOURCE-TYPE", "NAME", "PATTERN", "PRINCIPAL", "HOST", "OPERATION", "PERMISSION"]
        return f"{title}:\n" + format_table(headers, rows)

    return text


@click.group(name="acls")
def command() -> None:
    """ACLs (authorization): add, list and remove bindings, like kafka-acls."""


def _convenience(
    producer: bool, consumer: bool, idempotent: bool, resources: list[tuple[ResourceType, str]]
) -> list[tuple[ResourceType, str, Operation]]:
    """kafka-acls' --producer (Write, Describe, Create on the topics; IdempotentWrite on the cluster
    with --idempotent; Write, Describe on transactional ids) and --consumer (Read, Describe on the
    topics, Read on the groups): (resource type, name, operation) to grant."""
    topics = [name for kind, name in resources if kind is ResourceType.TOPIC]
    grants: list[tuple[ResourceType, str, Operation]] = []
    if producer:
        if not topics:
            fail("--producer needs --topic")
        grants += [
            (ResourceType.TOPIC, t, op)
            for t in topics
            for op in (Operation.WRITE, Operation.DESCRIBE, Operation.CREATE)
        ]
        grants += [
            (ResourceType.TRANSACTIONAL_ID, name, op)
            for kind, name in resources
            if kind is ResourceType.TRANSACTIONAL_ID
            for op in (Operation.WRITE, Operation.DESCRIBE)
        ]
        if idempotent:
            grants.append((ResourceType.CLUSTER, CLUSTER_NAME, Operation.IDEMPOTENT_WRITE))
    if consumer:
        groups = [name for kind, name in resources if kind is ResourceType.GROUP]
        if not topics or not groups:
            fail("--consumer needs --topic and --group")
        grants += [(ResourceType.TOPIC, t, op) for t in topics for op in (Operation.READ, Operation.DESCRIBE)]
        grants += [(ResourceType.GROUP, g, Operation.READ) for g in groups]
    return list(dict.fromkeys(grants))


@command.command(name="add")
@_principal_options
@_resource_options
@click.option("--producer", is_flag=True, help="What a producer needs on the --topic(s) (kafka-acls --producer).")
@click.option("--consumer", is_flag=True, help="What a consumer needs on the --topic(s) and --group(s).")
@click.option("--idempotent", is_flag=True, help="With --producer: IdempotentWrite on the cluster too.")
@bootstrap_option
@output_option
def add(
    allow_principals,
    deny_principals,
    allow_hosts,
    deny_hosts,
    topics,
    groups,
    cluster,
    transactional_ids,
    pattern_type,
    operations,
    producer,
    consumer,
    idempotent,
    bootstrap_server,
    output_format,
) -> None:
    """Add bindings (needs Alter on the cluster)."""
    pattern = PatternType.parse(pattern_type)
    if pattern not in (PatternType.LITERAL, PatternType.PREFIXED):
        fail("--resource-pattern-type: add takes literal or prefixed")
    resources = _resources(topics, groups, cluster, transactional_ids)
    entries = _entries(allow_principals, deny_principals, allow_hosts, deny_hosts)
    if not resources:
        fail("name a resource: --topic, --group, --cluster or --transactional-id")
    if not entries:
        fail("name a principal: --allow-principal or --deny-principal")
    if producer or consumer:
        if operations:
            fail("--producer and --consumer choose the operations themselves; leave --operation out")
        grants = _convenience(producer, consumer, idempotent, resources)
    else:
        grants = [(kind, name, op) for kind, name in resources for op in _operations(operations, Operation.ALL)]
    bindings = [
        AclBinding(
            kind,
            name,
            PatternType.LITERAL if kind is ResourceType.CLUSTER else pattern,
            principal,
            host,
            op,
            permission,
        )
        for kind, name, op in grants
        for principal, host, permission in entries
    ]
    for binding in bindings:
        try:
            binding.validate()
        except RaftlogError as exc:
            fail(exc.message)
    offset, created = admin_call(bootstrap_server, lambda admin: admin.create_acls(bindings))
    # What the controller added, and the rest of what was asked: those existed already (unchanged).
    added = set(created)
    data = {
        "bindings": [_binding_dict(b) for b in created],
        "existing": [_binding_dict(b) for b in dict.fromkeys(bindings) if b not in added],
        "offset": offset,
    }
    emit(output_format, data, _added_text)


def _added_text(data) -> str:
    text = _bindings_text("Added ACLs")(data)
    if data["existing"]:
        text += "\n" + _bindings_text("Already existing (unchanged)")({"bindings": data["existing"]})
    return text


def _filters(resources, pattern_type, operations, principals, hosts, permission=Permission.ANY) -> list[AclFilter]:
    pattern = PatternType.parse(pattern_type)
    ops = _operations(operations, Operation.ANY)
    named = resources or [(ResourceType.ANY, None)]
    return [
        AclFilter(
            kind,
            name,
            pattern if name is not None else PatternType.ANY,
            principal,
            host,
            op,
            permission,
        )
        for kind, name in named
        for op in ops
        for principal in principals or (None,)
        for host in hosts or (None,)
    ]


@command.command(name="list")
@click.option("--principal", "principals", multiple=True, help="Only bindings of this principal (repeatable).")
@_resource_options
@bootstrap_option
@output_option
def list_acls(
    principals, topics, groups, cluster, transactional_ids, pattern_type, operations, bootstrap_server, output_format
) -> None:
    """List bindings (needs Describe on the cluster); all of them unless resources or principals are named."""
    resources = _resources(topics, groups, cluster, transactional_ids)
    filters = _filters(resources, pattern_type, operations, principals, ())

    def describe(admin) -> list[AclBinding]:
        found: dict[AclBinding, None] = {}
        for acl_filter in filters:
            found.update(dict.fromkeys(admin.describe_acls(acl_filter)))
        return list(found)

    bindings = admin_call(bootstrap_server, describe)
    emit(output_format, {"bindings": [_binding_dict(b) for b in bindings]}, _bindings_text("Current ACLs"))


@command.command(name="remove")
@_principal_options
@_resource_options
@click.option("--force", is_flag=True, help="Remove without asking.")
@bootstrap_option
@output_option
def remove(
    allow_principals,
    deny_principals,
    allow_hosts,
    deny_hosts,
    topics,
    groups,
    cluster,
    transactional_ids,
    pattern_type,
    operations,
    force,
    bootstrap_server,
    output_format,
) -> None:
    """Remove the bindings matching the options (needs Alter on the cluster)."""
    resources = _resources(topics, groups, cluster, transactional_ids)
    if not resources:
        fail("name a resource: --topic, --group, --cluster or --transactional-id")
    if allow_principals or deny_principals:
        filters = []
        if allow_principals:
            filters += _filters(resources, pattern_type, operations, allow_principals, allow_hosts, Permission.ALLOW)
        if deny_principals:
            filters += _filters(resources, pattern_type, operations, deny_principals, deny_hosts, Permission.DENY)
    else:  # every principal's bindings on the resources
        filters = _filters(resources, pattern_type, operations, (), ())
    if not force and not click.confirm(f"Remove the ACLs matching {len(filters)} filter(s)?", err=True):
        fail("not removed (use --force to skip the question)")
    removed = admin_call(bootstrap_server, lambda admin: admin.delete_acls(filters))
    emit(output_format, {"bindings": [_binding_dict(b) for b in removed]}, _bindings_text("Removed ACLs"))
