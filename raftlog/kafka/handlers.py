"""One function per Kafka API, each a translation: the kio request becomes the protobuf request
the gRPC servicers take, the same broker object serves it (raftlog.replication.requests for
produce/fetch/list offsets/epoch end offsets, BrokerServicer for metadata and producer ids,
AdminServicer for topics, configs and the cluster (configs and partitions: admin_handlers.py;
SCRAM credentials: scram_handlers.py),
forwarded to the active controller as over gRPC, the GroupCoordinator for coordinators), and its answer becomes the kio response. No rule of the broker lives here.

`API_VERSIONS` is what ApiVersions advertises and all that is served: every other API or version
is answered UNSUPPORTED_VERSION (raftlog/kafka/server.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kio.schema.errors import ErrorCode

from raftlog.api.admin_service import AdminServicer
from raftlog.api.authorization import RequestAuthorizer
from raftlog.api.broker_service import BrokerServicer
from raftlog.api.group_service import GroupServicer
from raftlog.api.reads import await_applied
from raftlog.authorizer.authorizer import Caller
from raftlog.errors import Errors, Policy, RaftlogError
from raftlog.groups.coordinator import OFFSETS_TOPIC, GroupCoordinator
from raftlog.kafka import admin_handlers, group_handlers, scram_handlers
from raftlog.kafka.errors import code_of, code_of_error
from raftlog.kafka.protocol import NO_THROTTLE, CloseConnection, build, has_field, response_types
from raftlog.kafka.sasl import SASL_API_NAMES, SASL_API_VERSIONS
from raftlog.replication import requests
from raftlog.replication.manager import ReplicaManager
from raftlog.v1 import admin_pb2, broker_pb2, group_pb2


@dataclasses.dataclass(frozen=True)
class KafkaBroker:
    """The broker objects a Kafka listener serves from, the same ones its gRPC servers use; the
    servicers are built for the Kafka listener's name, so addresses are given on that listener."""

    cluster_id: str
    listener: str
    driver: Any
    broker: BrokerServicer
    admin: AdminServicer
    replicas: ReplicaManager
    groups: GroupCoordinator
    group_servicer: GroupServicer
    authorizer: RequestAuthorizer  # every handler checks through it, by raftlog.authorizer.required


Handler = Callable[[KafkaBroker, Any, int, Caller], Awaitable[Any]]

_GROUP_KEY_TYPE = 0


def _topic_uuid(topic_id: bytes) -> uuid.UUID | None:
    return uuid.UUID(bytes=topic_id) if len(topic_id) == 16 else None


def _by_topic(results, entry: Callable[[Any], Any]) -> dict[str, list]:
    """topic -> its partitions' kio entries, in the order of `results` (protobuf per-partition answers)."""
    grouped: dict[str, list] = {}
    for result in results:
        grouped.setdefault(result.topic, []).append(entry(result))
    return grouped


def _ms(delta) -> int:
    return int(delta.total_seconds() * 1000)


# -- ApiVersions ------------------------------------------------------------------------------


async def api_versions(broker: KafkaBroker, request, version: int, caller: Caller):
    return api_versions_response(version, ErrorCode.none)


def api_versions_response(version: int, code: ErrorCode):
    types = response_types(18, version)
    keys = tuple(
        build(types.ApiVersion, api_key=key, min_version=low, max_version=high)
        for key, (low, high) in sorted(API_VERSIONS.items())
    )
    return build(types.ApiVersionsResponse, error_code=code, api_keys=keys, throttle_time=NO_THROTTLE)


# -- Metadata ---------------------------------------------------------------------------------


async def metadata(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(3, version)
    names: list[str] = []
    if request.topics:
        by_id = {_topic_uuid(topic_id): name for name, topic_id in broker.replicas.image.topic_ids.items()}
        for topic in request.topics:
            topic_id = getattr(topic, "topic_id", None)
            name = topic.name if topic.name is not None else by_id.get(topic_id, str(topic_id))
            names.append(name)
    answer = await broker.broker.metadata(caller, broker_pb2.MetadataRequest(topics=names))
    if request.topics is not None and not request.topics:  # an empty list asks for no topic (None: all)
        del answer.topics[:]
    brokers = tuple(
        build(types.MetadataResponseBroker, node_id=b.broker_id, host=b.host, port=b.port, rack=b.rack or None)
        for b in answer.brokers
        if not b.fenced
    )
    topics = tuple(
        build(
            types.MetadataResponseTopic,
            error_code=code_of(t.error_reason),
            name=t.name,
            topic_id=_topic_uuid(t.topic_id) or uuid.UUID(int=0),
            is_internal=t.name == OFFSETS_TOPIC,
            partitions=tuple(
                build(
                    types.MetadataResponsePartition,
                    error_code=ErrorCode.leader_not_available if p.leader < 0 else ErrorCode.none,
                    partition_index=p.partition,
                    leader_id=p.leader,
                    leader_epoch=p.leader_epoch,
                    replica_nodes=tuple(p.replicas),
                    isr_nodes=tuple(p.isr),
                    offline_replicas=tuple(p.offline_replicas),
                )
                for p in t.partitions
            ),
        )
        for t in answer.topics
    )
    return build(
        types.MetadataResponse,
        throttle_time=NO_THROTTLE,
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=answer.controller_id,
        topics=topics,
    )


# -- Produce, Fetch, ListOffsets ----------------------------------------------------------------


async def produce(broker: KafkaBroker, request, version: int, caller: Caller):
    pb = broker_pb2.ProduceRequest(acks=request.acks, timeout_ms=_ms(request.timeout))
    for topic in request.topic_data:
        for data in topic.partition_data:
            pb.partitions.append(
                broker_pb2.PartitionRecords(topic=topic.name, partition=data.index, records=bytes(data.records or b""))
            )
    try:
        if request.transactional_id is not None:
            raise RaftlogError("INVALID_REQUEST", "transactions are not supported")
        results = list((await broker.broker.produce(caller, pb)).results)
    except RaftlogError as exc:  # the whole request: every partition answers with it
        results = [
            broker_pb2.PartitionProduceResult(
                topic=p.topic, partition=p.partition, error_reason=exc.reason, error_message=exc.message
            )
            for p in pb.partitions
        ]
    if request.acks == 0:  # Kafka sends no response to acks=0, and closes the connection on an error
        failed = next((r for r in results if r.error_reason), None)
        if failed is not None:
            raise CloseConnection(f"acks=0 produce to {failed.topic}-{failed.partition}: {failed.error_reason}")
        return None
    types = response_types(0, version)
    by_topic = _by_topic(
        results,
        lambda r: build(
            types.PartitionProduceResponse,
            index=r.partition,
            error_code=code_of(r.error_reason),
            base_offset=r.base_offset if not r.error_reason else -1,
            log_start_offset=r.log_start_offset if not r.error_reason else -1,
            record_errors=(),
            error_message=r.error_message or None,
        ),
    )
    responses = tuple(
        build(types.TopicProduceResponse, name=name, partition_responses=tuple(parts))
        for name, parts in by_topic.items()
    )
    return build(types.ProduceResponse, responses=responses, throttle_time=NO_THROTTLE)


async def fetch(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(1, version)
    if getattr(request, "replica_id", -1) >= 0:
        raise RaftlogError("INVALID_REQUEST", "followers fetch through raftlog's ReplicationService, not Kafka's Fetch")
    pb = broker_pb2.FetchRequest(
        max_wait_ms=_ms(request.max_wait), min_bytes=request.min_bytes, max_bytes=getattr(request, "max_bytes", 0)
    )
    for topic in request.topics:
        for p in topic.partitions:
            pb.partitions.append(
                broker_pb2.FetchPartition(
                    topic=topic.topic,
                    partition=p.partition,
                    fetch_offset=p.fetch_offset,
                    partition_max_bytes=p.partition_max_bytes,
                    current_leader_epoch=getattr(p, "current_leader_epoch", -1),
                )
            )
    answer = await broker.broker.fetch(caller, pb)

    def entry(r):
        ok = not r.error_reason
        return build(
            types.PartitionData,
            partition_index=r.partition,
            error_code=code_of(r.error_reason),
            high_watermark=r.high_watermark if ok else -1,
            # No transactions: everything below the high watermark is stable.
            last_stable_offset=r.high_watermark if ok else -1,
            log_start_offset=r.log_start_offset if ok else -1,
            aborted_transactions=None,
            records=r.records,
        )

    by_topic = _by_topic(answer.results, entry)
    responses = tuple(
        build(types.FetchableTopicResponse, topic=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )
    # Fetch sessions (KIP-227) are declined: session id 0, so every fetch is a full one.
    return build(
        types.FetchResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0, responses=responses
    )


async def list_offsets(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(2, version)
    pb = broker_pb2.ListOffsetsRequest(
        partitions=[
            broker_pb2.ListOffsetsPartition(topic=topic.name, partition=p.partition_index, timestamp=p.timestamp)
            for topic in request.topics
            for p in topic.partitions
        ]
    )
    answer = await broker.broker.list_offsets(caller, pb)

    def entry(r):
        ok = not r.error_reason
        return build(
            types.ListOffsetsPartitionResponse,
            partition_index=r.partition,
            error_code=code_of(r.error_reason),
            timestamp=r.timestamp if ok else -1,
            offset=r.offset if ok else -1,
            leader_epoch=r.leader_epoch if ok else -1,
        )

    by_topic = _by_topic(answer.results, entry)
    topics = tuple(
        build(types.ListOffsetsTopicResponse, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )
    return build(types.ListOffsetsResponse, throttle_time=NO_THROTTLE, topics=topics)


async def offset_for_leader_epoch(broker: KafkaBroker, request, version: int, caller: Caller):
    """Where each asked leader epoch ends in the partition leader's log (Partition.epoch_end_offset):
    librdkafka asks it after a leader change, before it fetches again, to learn whether the records
    below its position survived (KIP-320)."""
    types = response_types(23, version)
    if getattr(request, "replica_id", -1) >= 0:
        raise RaftlogError("INVALID_REQUEST", "followers ask through raftlog's ReplicationService, not Kafka's")
    asked = [
        (topic.topic, p.partition, getattr(p, "current_leader_epoch", -1), p.leader_epoch)
        for topic in request.topics
        for p in topic.partitions
    ]
    # Describe on each topic (as Kafka); a topic the caller may not describe answers per partition.
    denied = broker.authorizer.denied_topics(caller, "OffsetForLeaderEpoch", (a[0] for a in asked))
    served = [a for a in asked if a[0] not in denied]
    answers = iter(await requests.epoch_end_offsets(broker.replicas, served))
    by_topic: dict[str, list] = {}
    for topic, partition, _, _ in asked:
        answer = (
            RaftlogError("TOPIC_AUTHORIZATION_FAILED", f"{caller.principal} may not Describe topic {topic!r}")
            if topic in denied
            else next(answers)
        )
        if isinstance(answer, RaftlogError):
            code, (epoch, end_offset) = code_of_error(answer), (-1, -1)
        else:
            code, (epoch, end_offset) = ErrorCode.none, answer
        by_topic.setdefault(topic, []).append(
            build(types.EpochEndOffset, error_code=code, partition=partition, leader_epoch=epoch, end_offset=end_offset)
        )
    topics = tuple(
        build(types.OffsetForLeaderTopicResult, topic=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )
    return build(types.OffsetForLeaderEpochResponse, throttle_time=NO_THROTTLE, topics=topics)


async def init_producer_id(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(22, version)
    if request.transactional_id is not None:
        raise RaftlogError("INVALID_REQUEST", "transactions are not supported")
    broker.authorizer.check(caller, "InitProducerId")
    # A new id at epoch 0, also for a producer asking to bump its epoch (KIP-360): an idempotent
    # producer takes any id it is given and starts its sequences again.
    answer = await broker.broker.init_producer_id()
    return build(
        types.InitProducerIdResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        producer_id=answer.producer_id,
        producer_epoch=answer.producer_epoch,
    )


# -- topics, configs, cluster ----------------------------------------------------------------------


async def create_topics(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(19, version)

    async def create(topic):
        try:
            broker.authorizer.check(caller, "CreateTopic", [topic.name])
            if topic.assignments:
                raise RaftlogError("INVALID_REPLICA_ASSIGNMENT", "manual replica assignments are not supported")
            answer = await broker.admin.create_topic(
                admin_pb2.CreateTopicRequest(
                    name=topic.name,
                    partitions=max(topic.num_partitions, 0),
                    replication_factor=max(topic.replication_factor, 0),
                    configs={c.name: c.value for c in topic.configs if c.value is not None},
                    validate_only=request.validate_only if has_field(request, "validate_only") else False,
                )
            )
            await await_applied(broker.driver, answer.offset)  # its answer names what was created
            info = broker.replicas.image.topic(topic.name)
            partitions = len(info.partitions) if info else topic.num_partitions
            factor = len(info.partitions[0].replicas) if info and info.partitions else topic.replication_factor
            return build(
                types.CreatableTopicResult,
                name=topic.name,
                topic_id=_topic_uuid(answer.topic_id) or uuid.UUID(int=0),
                error_code=ErrorCode.none,
                error_message=None,
                num_partitions=partitions,
                replication_factor=factor,
                configs=(),
            )
        except RaftlogError as exc:
            return build(
                types.CreatableTopicResult,
                name=topic.name,
                topic_id=uuid.UUID(int=0),
                error_code=code_of_error(exc),
                error_message=exc.message,
                num_partitions=-1,
                replication_factor=-1,
                configs=(),
            )

    results = await asyncio.gather(*(create(topic) for topic in request.topics))
    return build(types.CreateTopicsResponse, throttle_time=NO_THROTTLE, topics=tuple(results))


async def delete_topics(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(20, version)

    async def delete(name: str):
        try:
            broker.authorizer.check(caller, "DeleteTopic", [name])
            answer = await broker.admin.delete_topic(admin_pb2.DeleteTopicRequest(name=name))
            await await_applied(broker.driver, answer.offset)
            return build(types.DeletableTopicResult, name=name, error_code=ErrorCode.none, error_message=None)
        except RaftlogError as exc:
            return build(
                types.DeletableTopicResult, name=name, error_code=code_of_error(exc), error_message=exc.message
            )

    results = await asyncio.gather(*(delete(name) for name in request.topic_names))
    return build(types.DeleteTopicsResponse, throttle_time=NO_THROTTLE, responses=tuple(results))


async def describe_cluster(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(60, version)
    if getattr(request, "endpoint_type", 1) != 1:  # 1: brokers; 2: controllers (not offered)
        raise RaftlogError("UNSUPPORTED_VERSION", "only broker endpoints are described")
    answer = await broker.admin.describe_cluster(admin_pb2.DescribeClusterRequest())
    brokers = tuple(
        build(
            types.DescribeClusterBroker,
            broker_id=b.broker_id,
            host=b.endpoint.host,
            port=b.endpoint.port,
            rack=b.rack or None,
        )
        for b in answer.brokers
    )
    return build(
        types.DescribeClusterResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        endpoint_type=1,
        cluster_id=answer.cluster_id,
        controller_id=answer.controller_id,
        brokers=brokers,
    )


async def find_coordinator(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(10, version)
    keys = tuple(request.coordinator_keys) if has_field(request, "coordinator_keys") else (request.key,)

    async def find(key: str) -> dict:
        try:
            if getattr(request, "key_type", _GROUP_KEY_TYPE) != _GROUP_KEY_TYPE:  # v0 has only group keys
                raise RaftlogError("INVALID_REQUEST", "only group coordinators exist (no transactions)")
            broker.authorizer.check(caller, "FindCoordinator", group=key)
            answer = await broker.groups.find_coordinator(key, broker.listener)
            return dict(
                node_id=answer.node_id,
                host=answer.host,
                port=answer.port,
                error_code=ErrorCode.none,
                error_message=None,
            )
        except RaftlogError as exc:
            # Kafka's FindCoordinator answers a passing failure (no active controller to create the
            # offsets topic, a leader moving) as COORDINATOR_NOT_AVAILABLE, which clients retry
            # quietly; librdkafka hands any other code, NOT_CONTROLLER included, to the application.
            code = code_of_error(exc)
            if exc.error.policy is not Policy.FAIL and exc.error is not Errors.NOT_COORDINATOR:
                code = ErrorCode.coordinator_not_available
            return dict(node_id=-1, host="", port=-1, error_code=code, error_message=exc.message)

    found = [await find(key) for key in keys]
    if has_field(request, "coordinator_keys"):
        coordinators = tuple(build(types.Coordinator, key=key, **f) for key, f in zip(keys, found))
        return build(types.FindCoordinatorResponse, throttle_time=NO_THROTTLE, coordinators=coordinators)
    return build(types.FindCoordinatorResponse, throttle_time=NO_THROTTLE, **{"error_message": None, **found[0]})


# -- offsets of groups ---------------------------------------------------------------------------


async def offset_commit(broker: KafkaBroker, request, version: int, caller: Caller):
    """Commits through the GroupCoordinator: a classic group member's commit is fenced by its
    generation (and group.instance.id); a consumer outside the group protocol (assign(),
    generation -1 and no member id) commits as over gRPC."""
    types = response_types(8, version)
    pb = group_pb2.OffsetCommitRequest(
        group_id=request.group_id,
        member_id=request.member_id or "",
        member_epoch=request.generation_id_or_member_epoch,
    )
    for topic in request.topics:
        for p in topic.partitions:
            pb.offsets.append(
                group_pb2.OffsetCommitPartition(
                    topic=topic.name,
                    partition=p.partition_index,
                    offset=p.committed_offset,
                    leader_epoch=getattr(p, "committed_leader_epoch", -1),
                    metadata=p.committed_metadata or "",
                )
            )
    try:
        answer = await broker.group_servicer.commit(caller, pb, getattr(request, "group_instance_id", None))
        codes = {(r.topic, r.partition): code_of(r.error_reason) for r in answer.results}
    except RaftlogError as exc:  # the group's error (NOT_COORDINATOR, UNKNOWN_MEMBER_ID, ...): every partition's
        codes = {(o.topic, o.partition): code_of_error(exc) for o in pb.offsets}
    topics = tuple(
        build(
            types.OffsetCommitResponseTopic,
            name=topic.name,
            partitions=tuple(
                build(
                    types.OffsetCommitResponsePartition,
                    partition_index=p.partition_index,
                    error_code=codes[(topic.name, p.partition_index)],
                )
                for p in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return build(types.OffsetCommitResponse, throttle_time=NO_THROTTLE, topics=topics)


async def offset_fetch(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(9, version)
    pb = group_pb2.OffsetFetchRequest(group_id=request.group_id)
    for topic in request.topics or ():
        pb.partitions.append(group_pb2.TopicPartitions(topic=topic.name, partitions=list(topic.partition_indexes)))
    try:
        answer = await broker.group_servicer.fetch_offsets(caller, pb)
        error = ErrorCode.none
        offsets = list(answer.offsets)
    except RaftlogError as exc:
        error = code_of_error(exc)
        offsets = [
            group_pb2.CommittedOffset(topic=t.topic, partition=p, offset=-1, leader_epoch=-1)
            for t in pb.partitions
            for p in t.partitions
        ]
    by_topic = _by_topic(
        offsets,
        lambda o: build(
            types.OffsetFetchResponsePartition,
            partition_index=o.partition,
            committed_offset=o.offset,
            committed_leader_epoch=o.leader_epoch,
            metadata=o.metadata,
            # Before v2 the group's error is only in the partitions.
            error_code=error if version < 2 else ErrorCode.none,
        ),
    )
    topics = tuple(
        build(types.OffsetFetchResponseTopic, name=name, partitions=tuple(parts)) for name, parts in by_topic.items()
    )
    return build(types.OffsetFetchResponse, throttle_time=NO_THROTTLE, topics=topics, error_code=error)


# What is served, and ApiVersions advertises: api key -> (min version, max version, handler).
# The ranges are those whose messages these handlers fill completely (fields of later versions,
# such as topic ids in Fetch v13+ and Produce v13+, are not served yet).
HANDLERS: dict[int, tuple[int, int, Handler]] = {
    0: (3, 9, produce),
    1: (4, 12, fetch),
    2: (1, 6, list_offsets),
    3: (1, 12, metadata),
    8: (2, 8, offset_commit),
    9: (1, 7, offset_fetch),
    10: (0, 4, find_coordinator),
    18: (0, 3, api_versions),
    19: (2, 7, create_topics),
    20: (1, 5, delete_topics),
    22: (0, 4, init_producer_id),
    23: (2, 4, offset_for_leader_epoch),
    32: (1, 4, admin_handlers.describe_configs),
    33: (0, 2, admin_handlers.alter_configs),
    37: (0, 3, admin_handlers.create_partitions),
    44: (0, 1, admin_handlers.incremental_alter_configs),
    60: (0, 1, describe_cluster),
}
HANDLERS.update(group_handlers.HANDLERS)  # the group APIs (raftlog/kafka/group_handlers.py)
HANDLERS.update(scram_handlers.HANDLERS)  # SCRAM credentials (raftlog/kafka/scram_handlers.py)
# SaslHandshake and SaslAuthenticate are served by the connection's SASL state (raftlog/kafka/sasl.py).
API_VERSIONS: dict[int, tuple[int, int]] = {
    **{key: (low, high) for key, (low, high, _) in HANDLERS.items()},
    **SASL_API_VERSIONS,
}
API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    18: "ApiVersions",
    19: "CreateTopics",
    20: "DeleteTopics",
    22: "InitProducerId",
    23: "OffsetForLeaderEpoch",
    32: "DescribeConfigs",
    33: "AlterConfigs",
    37: "CreatePartitions",
    44: "IncrementalAlterConfigs",
    60: "DescribeCluster",
    **group_handlers.API_NAMES,
    **scram_handlers.API_NAMES,
}
API_NAMES.update(SASL_API_NAMES)
assert set(API_NAMES) == set(API_VERSIONS), "every served API has a metrics name"
