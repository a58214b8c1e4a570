"""Admin client: quorum, cluster and config administration, shaped like Kafka's AdminClient."""

from __future__ import annotations

from typing import Any

from raftlog.client.connection import Connection
from raftlog.errors import RaftlogError
from raftlog.v1 import admin_pb2, admin_pb2_grpc

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
        offset = self._call("IncrementalAlterConfigs", request).offset
        self._seen_offset = max(self._seen_offset, offset)
        return offset

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
