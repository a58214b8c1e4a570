"""The node's authorization gate: callers from gRPC contexts, refusals audited (one log line and
a metric), per-partition answers for the topics a caller may not use, the Kafka edge's checks."""

from __future__ import annotations

import asyncio
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
from raftlog.v1 import broker_pb2

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
    assert "principal=User:alice host=10.1.2.3 operation=Write resource=Topic:orders api=Produce" in line
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
