"""The Kafka APIs that administer configs and partitions: DescribeConfigs, AlterConfigs,
IncrementalAlterConfigs and CreatePartitions. Translation only, as in handlers.py: each resource
becomes the protobuf request the AdminServicer takes (the gRPC AdminService's own methods,
forwarded to the active controller as over gRPC), and each resource or topic is answered with its
own Kafka error code (Kafka's per-resource model: one bad resource does not fail the others).
Each resource is authorized alone, as Kafka does (raftlog.authorizer.required: DescribeConfigs /
AlterConfigs on the topic, or on the cluster for a broker resource; Alter on a topic to grow it).

Writes wait until this node has applied them, so a DescribeConfigs or Metadata sent to the same
broker next sees the change (as CreateTopics does).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from raftlog.api.admin_service import config_api
from raftlog.api.reads import await_applied
from raftlog.errors import RaftlogError
from raftlog.kafka.errors import code_of_error
from raftlog.kafka.protocol import NO_THROTTLE, build, response_types
from raftlog.v1 import admin_pb2

if TYPE_CHECKING:
    from raftlog.authorizer.authorizer import Caller
    from raftlog.kafka.handlers import KafkaBroker

# Kafka's ConfigResource types, by raftlog's entity type names (a broker resource named "" is the
# cluster-wide default, one named by an id that broker's own configs).
_RESOURCE_TYPES = {2: "topics", 4: "brokers"}
# Kafka's config source numbers (DescribeConfigs v1+), by raftlog's source names.
_CONFIG_SOURCES = {
    "DYNAMIC_TOPIC_CONFIG": 1,
    "DYNAMIC_BROKER_CONFIG": 2,
    "DYNAMIC_DEFAULT_BROKER_CONFIG": 3,
    "STATIC_BROKER_CONFIG": 4,
    "DEFAULT_CONFIG": 5,
    "DEFAULT_BROKER_CONFIG": 5,
}


def _own_dynamic_source(resource: admin_pb2.ConfigResource) -> str:
    """The source of the dynamic configs set on exactly this resource (what a legacy AlterConfigs replaces)."""
    if resource.type == "topics":
        return "DYNAMIC_TOPIC_CONFIG"
    return "DYNAMIC_BROKER_CONFIG" if resource.name else "DYNAMIC_DEFAULT_BROKER_CONFIG"


# IncrementalAlterConfigs' operations: SET 0, DELETE 1, APPEND 2, SUBTRACT 3.
_OPERATIONS = {0: admin_pb2.AlterConfigOp.SET, 1: admin_pb2.AlterConfigOp.DELETE}


def _resource(resource_type: int, name: str) -> admin_pb2.ConfigResource:
    entity_type = _RESOURCE_TYPES.get(resource_type)
    if entity_type is None:
        raise RaftlogError("INVALID_REQUEST", f"resource type {resource_type} is not a topic (2) or a broker (4)")
    return admin_pb2.ConfigResource(type=entity_type, name=name)


def _duplicates(resources) -> set[tuple[int, str]]:
    """Resources named more than once in one request: Kafka answers each INVALID_REQUEST."""
    seen: set[tuple[int, str]] = set()
    twice: set[tuple[int, str]] = set()
    for resource in resources:
        key = (resource.resource_type, resource.resource_name)
        (twice if key in seen else seen).add(key)
    return twice


async def _resource_results(types: Any, request, alter) -> tuple:
    """One AlterConfigsResourceResponse per resource of `request`, from `alter(resource)` (which
    raises a RaftlogError for that resource alone)."""
    twice = _duplicates(request.resources)

    async def answer(resource):
        try:
            if (resource.resource_type, resource.resource_name) in twice:
                raise RaftlogError("INVALID_REQUEST", f"resource {resource.resource_name!r} appears more than once")
            await alter(resource)
            code, message = ErrorCode.none, None
        except RaftlogError as exc:
            code, message = code_of_error(exc), exc.message
        return build(
            types.AlterConfigsResourceResponse,
            error_code=code,
            error_message=message,
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
        )

    return tuple(await asyncio.gather(*(answer(resource) for resource in request.resources)))


async def _alter(
    broker: KafkaBroker, caller: Caller, resource: admin_pb2.ConfigResource, ops, validate_only: bool
) -> None:
    broker.authorizer.check(caller, *config_api("Alter", resource))
    answer = await broker.admin.incremental_alter_configs(
        admin_pb2.IncrementalAlterConfigsRequest(resource=resource, ops=ops, validate_only=validate_only)
    )
    if not validate_only:
        await await_applied(broker.driver, answer.offset)


# -- DescribeConfigs ----------------------------------------------------------------------------


async def describe_configs(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(32, version)
    results = []
    for resource in request.resources:
        try:
            config_resource = _resource(resource.resource_type, resource.resource_name)
            broker.authorizer.check(caller, *config_api("Describe", config_resource))
            answer = await broker.admin.describe_configs(
                admin_pb2.DescribeConfigsRequest(resource=config_resource, include_static=True)
            )
            wanted = set(resource.configuration_keys) if resource.configuration_keys is not None else None
            configs = tuple(
                build(
                    types.DescribeConfigsResourceResult,
                    name=entry.name,
                    value=entry.value,
                    read_only=entry.read_only,
                    config_source=_CONFIG_SOURCES.get(entry.source, 0),
                    is_default=entry.source in ("DEFAULT_CONFIG", "DEFAULT_BROKER_CONFIG"),
                    is_sensitive=False,
                    synonyms=(),
                )
                for entry in answer.entries
                if wanted is None or entry.name in wanted
            )
            code, message = ErrorCode.none, None
        except RaftlogError as exc:
            configs, code, message = (), code_of_error(exc), exc.message
        results.append(
            build(
                types.DescribeConfigsResult,
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=configs,
            )
        )
    return build(types.DescribeConfigsResponse, throttle_time=NO_THROTTLE, results=tuple(results))


# -- IncrementalAlterConfigs and AlterConfigs -------------------------------------------------------


async def incremental_alter_configs(broker: KafkaBroker, request, version: int, caller: Caller):
    """Each resource's operations as one IncrementalAlterConfigs of the AdminService (all of a
    resource's changes commit together or not at all). APPEND and SUBTRACT, which Kafka applies to
    list-valued configs, are refused: INVALID_CONFIG, as Kafka answers them for other configs."""
    types = response_types(44, version)

    async def alter(resource) -> None:
        ops = []
        for config in resource.configs:
            operation = _OPERATIONS.get(config.config_operation)
            if operation is None:
                raise RaftlogError(
                    "INVALID_CONFIG",
                    f"{config.name}: operation {config.config_operation} (APPEND 2 / SUBTRACT 3) is not "
                    "supported; SET (0) the whole value instead",
                )
            ops.append(admin_pb2.AlterConfigOp(name=config.name, op=operation, value=config.value or ""))
        target = _resource(resource.resource_type, resource.resource_name)
        await _alter(broker, caller, target, ops, request.validate_only)

    responses = await _resource_results(types, request, alter)
    return build(types.IncrementalAlterConfigsResponse, throttle_time=NO_THROTTLE, responses=responses)


async def alter_configs(broker: KafkaBroker, request, version: int, caller: Caller):
    """The legacy AlterConfigs: the configs given become the resource's whole set of dynamic
    configs, so the ones set on it now and not given are deleted (Kafka's semantics), in the same
    change. A config given with a null value is deleted too."""
    types = response_types(33, version)

    async def alter(resource) -> None:
        target = _resource(resource.resource_type, resource.resource_name)
        # AlterConfigs alone is needed (as Kafka): the current dynamic configs are read on its behalf
        broker.authorizer.check(caller, *config_api("Alter", target))
        current = await broker.admin.describe_configs(
            admin_pb2.DescribeConfigsRequest(resource=target, include_static=False)
        )
        given = {config.name: config.value for config in resource.configs}
        ops = [
            admin_pb2.AlterConfigOp(name=name, op=admin_pb2.AlterConfigOp.SET, value=value)
            for name, value in given.items()
            if value is not None
        ]
        dynamic = {entry.name for entry in current.entries if entry.source == _own_dynamic_source(target)}
        ops += [
            admin_pb2.AlterConfigOp(name=name, op=admin_pb2.AlterConfigOp.DELETE)
            for name in sorted(dynamic | {n for n, v in given.items() if v is None})
            if given.get(name) is None
        ]
        if ops:  # an empty set on a resource with no dynamic configs changes nothing
            await _alter(broker, caller, target, ops, request.validate_only)

    responses = await _resource_results(types, request, alter)
    return build(types.AlterConfigsResponse, throttle_time=NO_THROTTLE, responses=responses)


# -- CreatePartitions ------------------------------------------------------------------------------


async def create_partitions(broker: KafkaBroker, request, version: int, caller: Caller):
    """Grows each topic to `count` partitions through AdminServicer.create_partitions (the
    controller places the new replicas; manual assignments are refused, as in CreateTopics)."""
    types = response_types(37, version)
    names = [topic.name for topic in request.topics]
    twice = {name for name in names if names.count(name) > 1}

    async def grow(topic):
        try:
            if topic.name in twice:
                raise RaftlogError("INVALID_REQUEST", f"topic {topic.name!r} appears more than once")
            if topic.assignments:
                raise RaftlogError("INVALID_REPLICA_ASSIGNMENT", "manual replica assignments are not supported")
            broker.authorizer.check(caller, "CreatePartitions", [topic.name])
            answer = await broker.admin.create_partitions(
                admin_pb2.CreatePartitionsRequest(
                    name=topic.name, total_count=topic.count, validate_only=request.validate_only
                )
            )
            if not request.validate_only:
                await await_applied(broker.driver, answer.offset)
            code, message = ErrorCode.none, None
        except RaftlogError as exc:
            code, message = code_of_error(exc), exc.message
        return build(types.CreatePartitionsTopicResult, name=topic.name, error_code=code, error_message=message)

    results = await asyncio.gather(*(grow(topic) for topic in request.topics))
    return build(types.CreatePartitionsResponse, throttle_time=NO_THROTTLE, results=tuple(results))
