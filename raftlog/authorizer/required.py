"""What each API needs: the one table from an API to the operations it must be allowed (Kafka's
KafkaApis checks, by name), and the error a refusal answers with. Pure.

A requirement names a resource type; the request supplies the names (the topics it names, its
group; the cluster is always ``kafka-cluster``). ``or_cluster`` makes the operation on the cluster
enough too (CreateTopics: Create on the cluster, else on each topic); ``or_any_topic`` makes that
operation on any one topic enough (InitProducerId: IdempotentWrite on the cluster, else Write on
some topic, as Kafka 3+).
"""

from __future__ import annotations

from dataclasses import dataclass

from raftlog.authorizer.acls import Operation, ResourceType
from raftlog.errors import Errors

_T, _G, _C = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER
_O = Operation

FAILURES: dict[ResourceType, Errors] = {
    ResourceType.TOPIC: Errors.TOPIC_AUTHORIZATION_FAILED,
    ResourceType.GROUP: Errors.GROUP_AUTHORIZATION_FAILED,
    ResourceType.CLUSTER: Errors.CLUSTER_AUTHORIZATION_FAILED,
    ResourceType.TRANSACTIONAL_ID: Errors.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}


@dataclass(frozen=True, slots=True)
class Requirement:
    resource_type: ResourceType
    operation: Operation
    or_cluster: bool = False
    or_any_topic: Operation | None = None

    @property
    def error(self) -> Errors:
        return FAILURES[self.resource_type]


def _r(resource_type: ResourceType, operation: Operation, **kwargs) -> tuple[Requirement, ...]:
    return (Requirement(resource_type, operation, **kwargs),)


# API name (the gRPC method, or the Kafka API under the same name) -> what it needs.
REQUIRED: dict[str, tuple[Requirement, ...]] = {
    # data plane
    "Produce": _r(_T, _O.WRITE),
    "Fetch": _r(_T, _O.READ),
    "ListOffsets": _r(_T, _O.DESCRIBE),
    "OffsetForLeaderEpoch": _r(_T, _O.DESCRIBE),  # the Kafka listener's; answered per partition
    "Metadata": _r(_T, _O.DESCRIBE),  # topics the caller may not describe are left out of a listing
    "InitProducerId": _r(_C, _O.IDEMPOTENT_WRITE, or_any_topic=_O.WRITE),
    # consumer groups
    "FindCoordinator": _r(_G, _O.DESCRIBE),
    # the classic protocol (Kafka listener): Read on the group, as Kafka's KafkaApis
    "JoinGroup": _r(_G, _O.READ),
    "SyncGroup": _r(_G, _O.READ),
    "Heartbeat": _r(_G, _O.READ),
    "LeaveGroup": _r(_G, _O.READ),
    # and Describe on every topic it subscribes to by name (Kafka 3.8+: TOPIC_AUTHORIZATION_FAILED)
    "ConsumerGroupHeartbeat": (Requirement(_G, _O.READ), Requirement(_T, _O.DESCRIBE)),
    "OffsetCommit": (Requirement(_G, _O.READ), Requirement(_T, _O.READ)),
    "OffsetFetch": (Requirement(_G, _O.DESCRIBE), Requirement(_T, _O.DESCRIBE)),
    "OffsetDelete": (Requirement(_G, _O.DELETE), Requirement(_T, _O.READ)),
    "ListGroups": _r(_G, _O.DESCRIBE),  # groups the caller may not describe are left out
    "DescribeGroups": _r(_G, _O.DESCRIBE),
    "DeleteGroups": _r(_G, _O.DELETE),
    # topics and configs
    "CreateTopic": _r(_T, _O.CREATE, or_cluster=True),
    "DeleteTopic": _r(_T, _O.DELETE),
    "CreatePartitions": _r(_T, _O.ALTER),
    "DescribeTopicConfigs": _r(_T, _O.DESCRIBE_CONFIGS),
    "DescribeBrokerConfigs": _r(_C, _O.DESCRIBE_CONFIGS),
    "AlterTopicConfigs": _r(_T, _O.ALTER_CONFIGS),
    "AlterBrokerConfigs": _r(_C, _O.ALTER_CONFIGS),
    # the cluster
    "DescribeCluster": (),  # as Kafka: the brokers' addresses are in every Metadata answer anyway
    "DescribeQuorum": _r(_C, _O.DESCRIBE),
    "ElectLeaders": _r(_C, _O.ALTER),
    "AlterPartitionReassignments": _r(_C, _O.ALTER),
    "ListPartitionReassignments": _r(_C, _O.DESCRIBE),
    "UnregisterBroker": _r(_C, _O.ALTER),
    "AddRaftVoter": _r(_C, _O.ALTER),  # KIP-853: Alter on the cluster
    "RemoveRaftVoter": _r(_C, _O.ALTER),
    "BenchmarkQuorum": _r(_C, _O.ALTER),
    # SCRAM credentials (users)
    "AlterUserScramCredentials": _r(_C, _O.ALTER),
    "DescribeUserScramCredentials": _r(_C, _O.DESCRIBE),
    # ACLs
    "CreateAcls": _r(_C, _O.ALTER),
    "DeleteAcls": _r(_C, _O.ALTER),
    "DescribeAcls": _r(_C, _O.DESCRIBE),
    # a request another node forwards to the active controller, having authorized its caller
    # (Kafka's EnvelopeRequest): only nodes may send one
    "Forwarded": _r(_C, _O.CLUSTER_ACTION),
}

# Pipelined streams (raftlog/api/pipelined.py): each request on one is authorized as its unary API.
STREAMED_AS: dict[str, str] = {"ProduceStream": "Produce", "FetchStream": "Fetch", "OffsetCommitStream": "OffsetCommit"}
