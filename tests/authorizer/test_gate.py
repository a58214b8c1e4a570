"""The node's authorization gate: callers from gRPC contexts, refusals audited (one log line and
a metric), per-partition answers for the topics a caller may not use, the Kafka edge's checks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
from dataclasses import dataclass

import pytest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData

from raftlog.api.authorization import RequestAuthorizer, peer_host, serve_authorized_partitions
from raftlog.api.forwarding import FORWARDED_METADATA_KEY
from raftlog.authorizer.acls import AclBinding, Operation, PatternType, Permission, ResourceType
from raftlog.authorizer.authorizer import AuthorizerSettings, Caller
from raftlog.errors import Errors, RaftlogError
from raftlog.kafka import handlers
from raftlog.metadata.image import MetadataImage
from raftlog.metrics.registry import NodeMetrics
from raftlog.v1 import broker_pb2, group_pb2

ON = AuthorizerSettings(enabled=True, super_users=frozenset({"User:admin"}))


@dataclass
class Identity:
    principal: str
    node_ids: frozenset = frozenset()


class Authenticator:
    def __init__(self, identity: Identity):
        self._identity = identity

    def identity(self, context) -> Identity:
        return self._identity


class Context:
    def __init__(self, peer: str = "ipv4:10.1.2.3:5000", forwarded: bool = False):
        self._peer = peer
        self._metadata = ((FORWARDED_METADATA_KEY, "1"),) if forwarded else ()

    def peer(self) -> str:
        return self._peer

    def invocation_metadata(self):
        return self._metadata


class StateMachine:
    def __init__(self, *bindings: AclBinding):
        self.image = MetadataImage()
        self.image.acls = {bytes([i]) * 16: b for i, b in enumerate(bindings)}


def read_orders(principal="User:alice") -> AclBinding:
    return AclBinding(
        ResourceType.TOPIC, "orders", PatternType.LITERAL, principal, "*", Operation.READ, Permission.ALLOW
    )


def test_peer_hosts():
    assert peer_host(Context("ipv4:127.0.0.1:5555")) == "127.0.0.1"
    assert peer_host(Context("ipv6:[::1]:5555")) == "::1"


def test_a_refusal_is_logged_and_counted(caplog):
    metrics = NodeMetrics()
    gate = RequestAuthorizer(ON, StateMachine(read_orders()), Authenticator(Identity("User:alice")), metrics)
    caller = gate.caller(Context())
    assert caller == Caller("User:alice", "10.1.2.3")
    gate.check(caller, "Fetch", topics=["orders"])
    with caplog.at_level(logging.INFO, logger="raftlog.audit"), pytest.raises(RaftlogError) as info:
        gate.check(caller, "Produce", topics=["orders"])
    assert info.value.error is Errors.TOPIC_AUTHORIZATION_FAILED
    [line] = [r.getMessage() for r in caplog.records]
    assert "audit: refused principal=User:alice operation=Write resource=Topic:orders host=10.1.2.3 api=Produce" in line
    counted = metrics.registry.get_sample_value(
        "raftlog_authorization_denied_total", {"api": "Produce", "operation": "Write", "resource_type": "Topic"}
    )
    assert counted == 1
    with pytest.raises(RaftlogError) as info:
        gate.check(caller, "OffsetCommit", topics=["orders"], group="g")
    assert info.value.error is Errors.GROUP_AUTHORIZATION_FAILED


def test_only_a_node_may_forward():
    state = StateMachine()
    user = RequestAuthorizer(ON, state, Authenticator(Identity("User:alice")))
    with pytest.raises(RaftlogError) as info:
        user.check(user.caller(Context(forwarded=True)), "CreateTopic", topics=["t"])
    assert info.value.error is Errors.CLUSTER_AUTHORIZATION_FAILED
    node = RequestAuthorizer(ON, state, Authenticator(Identity("User:node-2", frozenset({2}))))
    node.check(node.caller(Context(forwarded=True)), "CreateTopic", topics=["t"])
    with pytest.raises(RaftlogError):  # not forwarded: the node is an ordinary principal
        node.check(node.caller(Context()), "CreateTopic", topics=["t"])


def test_denied_partitions_are_answered_and_the_rest_served():
    gate = RequestAuthorizer(ON, StateMachine(read_orders()), None)
    served = []

    async def serve(request):
        served.extend(p.topic for p in request.partitions)
        return broker_pb2.FetchResponse(
            results=[broker_pb2.FetchPartitionResult(topic=p.topic, partition=p.partition) for p in request.partitions]
        )

    request = broker_pb2.FetchRequest(
        partitions=[broker_pb2.FetchPartition(topic=t, partition=0) for t in ("orders", "payments")]
    )
    alice = Caller("User:alice", "h")
    answer = asyncio.run(
        serve_authorized_partitions(
            gate, alice, "Fetch", request, serve, broker_pb2.FetchResponse, broker_pb2.FetchPartitionResult
        )
    )
    assert served == ["orders"]
    assert {(r.topic, r.error_reason) for r in answer.results} == {
        ("orders", ""),
        ("payments", "TOPIC_AUTHORIZATION_FAILED"),
    }


def test_the_kafka_listener_checks_too():
    from raftlog.api.broker_service import BrokerServicer

    gate = RequestAuthorizer(ON, StateMachine(read_orders("User:ANONYMOUS")), None)
    servicer = BrokerServicer("c", None, None, None, None, gate)  # type: ignore[arg-type]
    broker = handlers.KafkaBroker("c", "KAFKA", None, servicer, None, None, None, None, gate)  # type: ignore[arg-type]
    request = ProduceRequest(
        transactional_id=None,
        acks=1,
        timeout=datetime.timedelta(seconds=1),
        topic_data=(TopicProduceData(name="orders", partition_data=(PartitionProduceData(index=0, records=b""),)),),
    )
    answer = asyncio.run(handlers.produce(broker, request, 9, Caller("User:ANONYMOUS", "127.0.0.1")))
    [topic] = answer.responses
    assert [p.error_code for p in topic.partition_responses] == [ErrorCode.topic_authorization_failed]


class ListingCoordinator:
    """A GroupCoordinator that only lists groups: any other call fails the test."""

    async def list_groups(self):
        return group_pb2.ListGroupsResponse(
            groups=[group_pb2.ListedGroup(group_id=g, group_type="classic", state="Stable") for g in ("g1", "g2")]
        )


def test_the_kafka_group_and_admin_apis_check_before_they_touch_anything():
    """With ACLs on and only Describe on group g1 for alice: every group and admin API of the Kafka
    listener refuses with Kafka's code (the coordinator and the admin servicer are absent, so
    reaching them would fail), and ListGroups leaves g2 out."""
    from kio.index import load_request_schema

    from raftlog.api.group_service import GroupServicer
    from raftlog.kafka import admin_handlers, group_handlers
    from raftlog.kafka.protocol import _zero_entity

    describe_g1 = AclBinding(
        ResourceType.GROUP, "g1", PatternType.LITERAL, "User:alice", "*", Operation.DESCRIBE, Permission.ALLOW
    )
    gate = RequestAuthorizer(ON, StateMachine(describe_g1), None)
    groups = GroupServicer(ListingCoordinator(), gate)  # type: ignore[arg-type]
    replicas = StateMachine()  # only its image (ConsumerGroupHeartbeat maps topic ids with it)
    broker = handlers.KafkaBroker("c", "KAFKA", None, None, None, replicas, None, groups, gate)  # type: ignore[arg-type]
    alice = Caller("User:alice", "127.0.0.1")

    def request(api_key: int, version: int, **fields):
        return dataclasses.replace(_zero_entity(load_request_schema(api_key, version), ErrorCode.none), **fields)

    def run(handler, api_key, version, **fields):
        return asyncio.run(handler(broker, request(api_key, version, **fields), version, alice))

    for handler, api_key, version in (
        (group_handlers.join_group, 11, 5),
        (group_handlers.heartbeat, 12, 4),
        (group_handlers.leave_group, 13, 4),
        (group_handlers.sync_group, 14, 5),
    ):
        with pytest.raises(RaftlogError) as refused:  # the server answers it as the top-level code
            run(handler, api_key, version, group_id="g1")  # Describe is not Read
        assert refused.value.error is Errors.GROUP_AUTHORIZATION_FAILED, handler

    answer = run(group_handlers.consumer_group_heartbeat, 68, 0, group_id="g1", member_epoch=0)
    assert answer.error_code == ErrorCode.group_authorization_failed
    assert [g.group_id for g in run(group_handlers.list_groups, 16, 4).groups] == ["g1"]
    answer = run(group_handlers.describe_groups, 15, 5, groups=("g2",))
    assert [g.error_code for g in answer.groups] == [ErrorCode.group_authorization_failed]
    answer = run(group_handlers.delete_groups, 42, 2, groups_names=("g1",))
    assert [r.error_code for r in answer.results] == [ErrorCode.group_authorization_failed]
    answer = run(group_handlers.offset_delete, 47, 0, group_id="g1")
    assert answer.error_code == ErrorCode.group_authorization_failed

    from kio.schema.create_partitions.v3.request import CreatePartitionsTopic
    from kio.schema.describe_configs.v4.request import DescribeConfigsResource
    from kio.schema.incremental_alter_configs.v1.request import AlterableConfig, AlterConfigsResource
    from kio.schema.offset_for_leader_epoch.v4.request import OffsetForLeaderPartition, OffsetForLeaderTopic

    grow = CreatePartitionsTopic(name="orders", count=3, assignments=None)
    answer = run(admin_handlers.create_partitions, 37, 3, topics=(grow,))
    assert [r.error_code for r in answer.results] == [ErrorCode.topic_authorization_failed]
    retention = AlterableConfig(name="retention.ms", config_operation=0, value="1")
    resources = (
        AlterConfigsResource(resource_type=2, resource_name="orders", configs=(retention,)),
        AlterConfigsResource(resource_type=4, resource_name="", configs=(retention,)),
    )
    answer = run(admin_handlers.incremental_alter_configs, 44, 1, resources=resources)
    assert [r.error_code for r in answer.responses] == [
        ErrorCode.topic_authorization_failed,
        ErrorCode.cluster_authorization_failed,
    ]
    described = DescribeConfigsResource(resource_type=2, resource_name="orders", configuration_keys=None)
    answer = run(admin_handlers.describe_configs, 32, 4, resources=(described,))
    assert [r.error_code for r in answer.results] == [ErrorCode.topic_authorization_failed]
    asked = OffsetForLeaderTopic(
        topic="orders", partitions=(OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0),)
    )
    answer = run(handlers.offset_for_leader_epoch, 23, 4, replica_id=-1, topics=(asked,))
    assert [p.error_code for t in answer.topics for p in t.partitions] == [ErrorCode.topic_authorization_failed]
