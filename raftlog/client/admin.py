"""Admin client: quorum, cluster and config administration, shaped like Kafka's AdminClient."""

from __future__ import annotations

from typing import Any

from raftlog.client.connection import Connection
from raftlog.errors import RaftlogError
from raftlog.v1 import admin_pb2, admin_pb2_grpc, broker_pb2, broker_pb2_grpc

ENTITY_TYPES = ("brokers", "topics")


class Admin:
    def __init__(self, bootstrap_servers: str | list[str], timeout_ms: int = 15000):
        self._connection = Connection(bootstrap_servers, timeout_ms)
        # Highest metadata offset this client has written at; reads ask to see at least it.
        self._seen_offset = 0

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._connection.close()

    def _call(self, method: str, request, server: str | None = None):
        return self._connection.call(admin_pb2_grpc.AdminServiceStub, method, request, server)

    def _write(self, method: str, request):
        """A metadata write: later reads from this client will see it (read-your-writes)."""
        response = self._call(method, request)
        self._seen_offset = max(self._seen_offset, response.offset)
        return response

    # -- topics -----------------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int | None = 1, replication_factor: int | None = 3,
                     config: dict[str, str] | None = None, validate_only: bool = False) -> str:
        """Creates a topic; None takes the broker default (num.partitions, default.replication.factor).

        Returns the topic id (hex).
        """
        request = admin_pb2.CreateTopicRequest(
            name=name, partitions=partitions or 0, replication_factor=replication_factor or 0,
            configs={k: str(v) for k, v in (config or {}).items()}, validate_only=validate_only,
        )
        return self._write("CreateTopic", request).topic_id.hex()

    def delete_topic(self, name: str) -> None:
        self._write("DeleteTopic", admin_pb2.DeleteTopicRequest(name=name))

    def create_partitions(self, name: str, total_count: int, validate_only: bool = False) -> None:
        request = admin_pb2.CreatePartitionsRequest(name=name, total_count=total_count, validate_only=validate_only)
        self._write("CreatePartitions", request)

    def metadata(self, topics: list[str] | None = None) -> broker_pb2.MetadataResponse:
        request = broker_pb2.MetadataRequest(topics=topics or [], min_metadata_offset=self._seen_offset)
        return self._connection.call(broker_pb2_grpc.BrokerServiceStub, "Metadata", request)

    def list_topics(self) -> list[str]:
        return [t.name for t in self.metadata().topics]

    def describe_topics(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Topic, id, partitions with leader/replicas/ISR, and the topic's dynamic configs."""
        response = self.metadata(names)
        described = []
        for topic in response.topics:
            if topic.error_reason:
                raise RaftlogError.from_reason(topic.error_reason, f"topic {topic.name!r} does not exist")
            configs = {c["name"]: c["value"] for c in self.describe_configs("topics", topic.name)}
            described.append(_topic_dict(topic, configs))
        return described

    def elect_leaders(self, election_type: str = "preferred",
                      partitions: list[tuple[str, int]] | None = None) -> list[dict[str, Any]]:
        kinds = {"preferred": admin_pb2.ElectLeadersRequest.PREFERRED,
                 "unclean": admin_pb2.ElectLeadersRequest.UNCLEAN}
        if election_type not in kinds:
            raise RaftlogError("INVALID_REQUEST", "election type must be preferred or unclean")
        request = admin_pb2.ElectLeadersRequest(
            election_type=kinds[election_type],
            partitions=[admin_pb2.TopicPartitionRef(topic=t, partition=p) for t, p in partitions or []],
        )
        response = self._write("ElectLeaders", request)
        return [
            {"topic": r.partition.topic, "partition": r.partition.partition,
             "error": r.error_reason or None, "message": r.error_message or None}
            for r in response.results
        ]

    def reassign_partition(self, topic: str, partition: int, replicas: list[int]) -> None:
        request = admin_pb2.AlterPartitionReassignmentsRequest(
            partition=admin_pb2.TopicPartitionRef(topic=topic, partition=partition), replicas=replicas
        )
        self._write("AlterPartitionReassignments", request)

    # -- quorum, cluster, configs -----------------------------------------------------------

    def describe_quorum(self) -> dict[str, Any]:
        """Status and per-voter replication of the metadata quorum, like kafka-metadata-quorum."""
        response = self._call("DescribeQuorum", admin_pb2.DescribeQuorumRequest())
        leader_end = max((v.log_end_offset for v in response.voters if v.is_leader), default=0)
        replication = [
            {
                "node_id": v.node_id,
                "log_end_offset": v.log_end_offset,
                "lag": max(0, leader_end - v.log_end_offset),
                "last_fetch_ms_ago": v.last_fetch_ms_ago,
                "last_caught_up_ms_ago": v.last_caught_up_ms_ago,
                "status": "Leader" if v.is_leader else "Follower",
            }
            for v in response.voters
        ]
        return {
            "cluster_id": response.cluster_id,
            "leader_id": response.leader_id,
            "leader_epoch": response.leader_epoch,
            "high_watermark": response.high_watermark,
            "max_follower_lag": max((r["lag"] for r in replication), default=0),
            "current_voters": [v.node_id for v in response.voters],
            "replication": replication,
        }

    def describe_cluster(self) -> dict[str, Any]:
        request = admin_pb2.DescribeClusterRequest(min_metadata_offset=self._seen_offset)
        response = self._call("DescribeCluster", request)
        return {
            "cluster_id": response.cluster_id,
            "controller_id": response.controller_id,
            "brokers": [
                {
                    "id": b.broker_id,
                    "host": b.endpoint.host,
                    "port": b.endpoint.port,
                    "rack": b.rack or None,
                    "fenced": b.fenced,
                    "epoch": b.broker_epoch,
                    "incarnation_id": b.incarnation_id,
                }
                for b in response.brokers
            ],
        }

    def describe_configs(self, entity_type: str, entity_name: str = "", include_static: bool = False) -> list[dict]:
        """Config entries of one entity; entity_name "" is the default entity of the type.

        For one broker, static values are that broker's, so the request goes to that broker.
        """
        _check_entity_type(entity_type)
        server = self._broker_address(entity_name) if entity_type == "brokers" and entity_name else None
        resource = admin_pb2.ConfigResource(type=entity_type, name=entity_name)
        request = admin_pb2.DescribeConfigsRequest(
            resource=resource, include_static=include_static, min_metadata_offset=self._seen_offset
        )
        response = self._call("DescribeConfigs", request, server)
        return [
            {"name": e.name, "value": e.value, "source": e.source, "read_only": e.read_only} for e in response.entries
        ]

    def alter_configs(
        self,
        entity_type: str,
        entity_name: str = "",
        set_configs: dict[str, str] | None = None,
        delete_configs: list[str] | None = None,
        validate_only: bool = False,
    ) -> int:
        """Sets and deletes dynamic configs in one committed change; returns its metadata offset."""
        _check_entity_type(entity_type)
        ops = [admin_pb2.AlterConfigOp(name=k, op=admin_pb2.AlterConfigOp.SET, value=str(v))
               for k, v in (set_configs or {}).items()]
        ops += [admin_pb2.AlterConfigOp(name=k, op=admin_pb2.AlterConfigOp.DELETE) for k in delete_configs or []]
        request = admin_pb2.IncrementalAlterConfigsRequest(
            resource=admin_pb2.ConfigResource(type=entity_type, name=entity_name), ops=ops, validate_only=validate_only
        )
        return self._write("IncrementalAlterConfigs", request).offset

    def benchmark_quorum(self, count: int, concurrency: int, payload_bytes: int = 64) -> admin_pb2.BenchmarkQuorumResponse:
        request = admin_pb2.BenchmarkQuorumRequest(count=count, concurrency=concurrency, payload_bytes=payload_bytes)
        return self._call("BenchmarkQuorum", request)

    def _broker_address(self, entity_name: str) -> str:
        for broker in self.describe_cluster()["brokers"]:
            if str(broker["id"]) == entity_name:
                return f"{broker['host']}:{broker['port']}"
        raise RaftlogError("UNKNOWN_BROKER", f"broker {entity_name!r} is not registered")


def _check_entity_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise RaftlogError("INVALID_REQUEST", f"entity type must be one of {', '.join(ENTITY_TYPES)}")


def _topic_dict(topic: broker_pb2.TopicMetadata, configs: dict[str, str]) -> dict[str, Any]:
    return {
        "topic": topic.name,
        "topic_id": topic.topic_id.hex(),
        "partition_count": len(topic.partitions),
        "replication_factor": len(topic.partitions[0].replicas) if topic.partitions else 0,
        "configs": configs,
        "partitions": [
            {
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": list(p.replicas),
                "isr": list(p.isr),
                "offline_replicas": list(p.offline_replicas),
                "adding_replicas": list(p.adding_replicas),
                "removing_replicas": list(p.removing_replicas),
            }
            for p in topic.partitions
        ],
    }
