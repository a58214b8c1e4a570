"""The group APIs of the Kafka listener, each a translation onto the GroupCoordinator (the one
the gRPC GroupService uses): the classic protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
whose rules are ``raftlog.groups.classic``), ConsumerGroupHeartbeat (KIP-848, the consumer-type
groups of ``raftlog.groups.group``), and ListGroups, DescribeGroups, DeleteGroups, OffsetDelete
for groups of both types. No rule of the groups lives here. Each checks its caller through the
node's RequestAuthorizer by ``raftlog.authorizer.required`` before it touches a group, as Kafka
does: Read on the group to be a member, Describe to see it, Delete to delete it or its offsets.

`HANDLERS` is merged into `raftlog.kafka.handlers.HANDLERS`, what ApiVersions advertises.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kio.schema.errors import ErrorCode

from raftlog.errors import RaftlogError
from raftlog.groups import records as rec
from raftlog.groups.classic import JoinRequest
from raftlog.kafka.client_info import CURRENT_CLIENT
from raftlog.kafka.errors import code_of, code_of_error
from raftlog.kafka.protocol import NO_THROTTLE, build, has_field, response_types
from raftlog.v1 import group_pb2

if TYPE_CHECKING:
    from raftlog.authorizer.authorizer import Caller
    from raftlog.kafka.handlers import KafkaBroker

Handler = Callable[["KafkaBroker", Any, int, "Caller"], Awaitable[Any]]

NO_REBALANCE_TIMEOUT_MS = -1  # JoinGroup v0 has none: the session timeout stands in, as in Kafka


def _ms(delta) -> int:
    return int(delta.total_seconds() * 1000)


def _instance(request) -> str | None:
    return getattr(request, "group_instance_id", None)


# -- the classic protocol ------------------------------------------------------------------------


async def join_group(broker: KafkaBroker, request, version: int, caller: Caller):
    broker.authorizer.check(caller, "JoinGroup", group=request.group_id)
    types = response_types(11, version)
    client = CURRENT_CLIENT.get()
    session_ms = _ms(request.session_timeout)
    rebalance_ms = (
        _ms(request.rebalance_timeout) if has_field(request, "rebalance_timeout") else NO_REBALANCE_TIMEOUT_MS
    )
    answer = await broker.groups.join_classic(
        request.group_id,
        JoinRequest(
            member_id=request.member_id or "",
            instance_id=_instance(request),
            client_id=client.client_id,
            client_host=client.host,
            session_timeout_ms=session_ms,
            rebalance_timeout_ms=rebalance_ms if rebalance_ms > 0 else session_ms,
            protocol_type=request.protocol_type,
            protocols=tuple((p.name, bytes(p.metadata)) for p in request.protocols),
            require_known_member_id=version >= 4,
        ),
    )
    members = tuple(
        build(types.JoinGroupResponseMember, member_id=member_id, group_instance_id=instance_id, metadata=metadata)
        for member_id, instance_id, metadata in answer.members
    )
    return build(
        types.JoinGroupResponse,
        throttle_time=NO_THROTTLE,
        error_code=code_of(answer.error),
        generation_id=answer.generation,
        protocol_type=answer.protocol_type,
        protocol_name=answer.protocol_name if answer.protocol_name is not None or version >= 7 else "",
        leader=answer.leader_id,
        skip_assignment=answer.skip_assignment,
        member_id=answer.member_id,
        members=members,
    )


async def sync_group(broker: KafkaBroker, request, version: int, caller: Caller):
    broker.authorizer.check(caller, "SyncGroup", group=request.group_id)
    types = response_types(14, version)
    answer = await broker.groups.sync_classic(
        request.group_id,
        request.member_id,
        _instance(request),
        request.generation_id,
        getattr(request, "protocol_type", None),
        getattr(request, "protocol_name", None),
        {a.member_id: bytes(a.assignment) for a in request.assignments},
    )
    return build(
        types.SyncGroupResponse,
        throttle_time=NO_THROTTLE,
        error_code=code_of(answer.error),
        protocol_type=answer.protocol_type,
        protocol_name=answer.protocol_name,
        assignment=answer.assignment,
    )


async def heartbeat(broker: KafkaBroker, request, version: int, caller: Caller):
    broker.authorizer.check(caller, "Heartbeat", group=request.group_id)
    types = response_types(12, version)
    await broker.groups.heartbeat_classic(
        request.group_id, request.member_id, _instance(request), request.generation_id
    )
    return build(types.HeartbeatResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none)


async def leave_group(broker: KafkaBroker, request, version: int, caller: Caller):
    broker.authorizer.check(caller, "LeaveGroup", group=request.group_id)
    types = response_types(13, version)
    if has_field(request, "members"):
        leaving = [(m.member_id or "", m.group_instance_id) for m in request.members]
    else:
        leaving = [(request.member_id, None)]
    answers = await broker.groups.leave_classic(request.group_id, leaving)
    if not has_field(types.LeaveGroupResponse, "members"):  # v0-v2: one member, its error is the response's
        [answer] = answers
        return build(types.LeaveGroupResponse, throttle_time=NO_THROTTLE, error_code=code_of(answer.error))
    members = tuple(
        build(
            types.MemberResponse,
            member_id=a.member_id,
            group_instance_id=a.instance_id,
            error_code=code_of(a.error),
        )
        for a in answers
    )
    return build(types.LeaveGroupResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, members=members)


# -- KIP-848 ---------------------------------------------------------------------------------------


async def consumer_group_heartbeat(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(68, version)
    client = CURRENT_CLIENT.get()
    image = broker.replicas.image
    name_of = {uuid.UUID(bytes=topic_id): name for name, topic_id in image.topic_ids.items() if len(topic_id) == 16}
    regex = getattr(request, "subscribed_topic_regex", None)
    changed = request.subscribed_topic_names is not None or regex is not None
    owned = None
    if request.topic_partitions is not None:
        owned = [
            group_pb2.TopicPartitions(topic=name_of[tp.topic_id], partitions=list(tp.partitions))
            for tp in request.topic_partitions
            if tp.topic_id in name_of
        ]
    pb = group_pb2.ConsumerGroupHeartbeatRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id or "",
        rebalance_timeout_ms=max(_ms(request.rebalance_timeout), 0),
        subscription_changed=changed,
        subscribed_topic_names=list(request.subscribed_topic_names or ()),
        subscribed_regex=regex or "",
        server_assignor=request.server_assignor or "",
        owned_sent=owned is not None,
        owned_partitions=owned or [],
        client_id=client.client_id,
    )
    try:
        answer = await broker.group_servicer.heartbeat(caller, pb, client.host)
    except RaftlogError as exc:
        return build(
            types.ConsumerGroupHeartbeatResponse,
            throttle_time=NO_THROTTLE,
            error_code=code_of_error(exc),
            error_message=exc.message,
            member_id=request.member_id,
            member_epoch=-1,
            heartbeat_interval=NO_THROTTLE,
            assignment=None,
        )
    assigned = {(tp.topic, p) for tp in answer.assignment for p in tp.partitions}
    reported = {(tp.topic, p) for tp in owned for p in tp.partitions} if owned is not None else None
    # As Kafka does, the assignment is sent when it may be news to the member: a full request
    # (joining, or a subscription sent), a new epoch, or owned partitions that differ from it.
    send = changed or answer.member_epoch != request.member_epoch or reported is None or reported != assigned
    assignment = None
    if send and answer.member_epoch >= 0:
        ids = image.topic_ids
        assignment = build(
            types.Assignment,
            topic_partitions=tuple(
                build(types.TopicPartitions, topic_id=uuid.UUID(bytes=ids[tp.topic]), partitions=tuple(tp.partitions))
                for tp in answer.assignment
                if len(ids.get(tp.topic, b"")) == 16
            ),
        )
    return build(
        types.ConsumerGroupHeartbeatResponse,
        throttle_time=NO_THROTTLE,
        error_code=ErrorCode.none,
        error_message=None,
        member_id=answer.member_id,
        member_epoch=answer.member_epoch,
        heartbeat_interval=datetime.timedelta(milliseconds=answer.heartbeat_interval_ms),
        assignment=assignment,
    )


# -- groups of both types --------------------------------------------------------------------------


async def list_groups(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(16, version)
    answer = await broker.group_servicer.list_groups(caller)  # the groups the caller may describe
    states = {s.lower() for s in getattr(request, "states_filter", ()) or ()}
    kinds = {t.lower() for t in getattr(request, "types_filter", ()) or ()}
    groups = tuple(
        build(
            types.ListedGroup,
            group_id=g.group_id,
            protocol_type=g.protocol_type,
            group_state=g.state,
            group_type=g.group_type,
        )
        for g in answer.groups
        if (not states or g.state.lower() in states) and (not kinds or g.group_type in kinds)
    )
    return build(types.ListGroupsResponse, throttle_time=NO_THROTTLE, error_code=ErrorCode.none, groups=groups)


async def describe_groups(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(15, version)
    described = []
    for group_id in request.groups:
        values: dict[str, Any] = dict(
            error_code=ErrorCode.none,
            error_message=None,
            group_id=group_id,
            group_state="Dead",  # Kafka's answer for a group that does not exist
            protocol_type="",
            protocol_data="",
            members=(),
            authorized_operations=-2147483648,  # not asked for / not computed
        )
        try:
            broker.authorizer.check(caller, "DescribeGroups", group=group_id)
            entry, _ = await broker.groups.classic_group(group_id)
            if entry is not None and entry.classic is not None:
                group = entry.classic
                values.update(
                    group_state=group.state.value,
                    protocol_type=group.protocol_type or "",
                    protocol_data=group.protocol_name or "",
                    members=tuple(
                        build(
                            types.DescribedGroupMember,
                            member_id=m.member_id,
                            group_instance_id=m.instance_id,
                            client_id=m.client_id,
                            client_host=m.client_host,
                            member_metadata=m.metadata(group.protocol_name),
                            member_assignment=m.assignment,
                        )
                        for m in group.members.values()
                    ),
                )
            elif entry is not None:
                # A consumer-type group, as Kafka 4.0 describes one to a classic client: its
                # members' assignments in the consumer protocol's layout.
                consumer = entry.group
                values.update(
                    group_state=consumer.state.value,
                    protocol_type="consumer",
                    protocol_data=consumer.assignor,
                    members=tuple(
                        build(
                            types.DescribedGroupMember,
                            member_id=m.member_id,
                            group_instance_id=m.instance_id,
                            client_id=m.client_id,
                            client_host=m.client_host,
                            member_metadata=rec.encode_consumer_subscription(tuple(sorted(m.subscribed_topics))),
                            member_assignment=rec.encode_consumer_assignment(tuple(sorted(m.assigned))),
                        )
                        for m in consumer.members.values()
                    ),
                )
        except RaftlogError as exc:
            values.update(error_code=code_of_error(exc), error_message=exc.message)
        described.append(build(types.DescribedGroup, **values))
    return build(types.DescribeGroupsResponse, throttle_time=NO_THROTTLE, groups=tuple(described))


async def delete_groups(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(42, version)
    results = []
    for group_id in request.groups_names:
        try:
            broker.authorizer.check(caller, "DeleteGroups", group=group_id)
            await broker.groups.delete_group(group_id)
            code = ErrorCode.none
        except RaftlogError as exc:
            code = code_of_error(exc)
        results.append(build(types.DeletableGroupResult, group_id=group_id, error_code=code))
    return build(types.DeleteGroupsResponse, throttle_time=NO_THROTTLE, results=tuple(results))


async def offset_delete(broker: KafkaBroker, request, version: int, caller: Caller):
    types = response_types(47, version)
    pb = group_pb2.OffsetDeleteRequest(
        group_id=request.group_id,
        partitions=[
            group_pb2.TopicPartitions(topic=t.name, partitions=[p.partition_index for p in t.partitions])
            for t in request.topics
        ],
    )
    try:
        answer = await broker.group_servicer.delete_offsets(caller, pb)
    except RaftlogError as exc:  # the group's error: top level, no partitions (Kafka's getErrorResponse)
        return build(types.OffsetDeleteResponse, error_code=code_of_error(exc), throttle_time=NO_THROTTLE, topics=())
    codes = {(r.topic, r.partition): code_of(r.error_reason) for r in answer.results}
    topics = tuple(
        build(
            types.OffsetDeleteResponseTopic,
            name=t.name,
            partitions=tuple(
                build(
                    types.OffsetDeleteResponsePartition,
                    partition_index=p.partition_index,
                    error_code=codes.get((t.name, p.partition_index), ErrorCode.none),
                )
                for p in t.partitions
            ),
        )
        for t in request.topics
    )
    return build(types.OffsetDeleteResponse, error_code=ErrorCode.none, throttle_time=NO_THROTTLE, topics=topics)


# api key -> (min version, max version, handler), merged into raftlog.kafka.handlers.HANDLERS.
HANDLERS: dict[int, tuple[int, int, Handler]] = {
    11: (0, 9, join_group),
    12: (0, 4, heartbeat),
    13: (0, 5, leave_group),
    14: (0, 5, sync_group),
    15: (0, 5, describe_groups),
    16: (0, 5, list_groups),
    42: (0, 2, delete_groups),
    47: (0, 0, offset_delete),
    68: (0, 1, consumer_group_heartbeat),
}
API_NAMES = {
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    15: "DescribeGroups",
    16: "ListGroups",
    42: "DeleteGroups",
    47: "OffsetDelete",
    68: "ConsumerGroupHeartbeat",
}
