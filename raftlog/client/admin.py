"""Admin client: quorum, cluster and config administration, shaped like Kafka's AdminClient."""

from __future__ import annotations

import time
from typing import Any

import grpc

from raftlog.authorizer.acls import AclBinding, AclFilter
from raftlog.channels import error_from_rpc
from raftlog.client import records as record_codec
from raftlog.client.connection import Connection, retried_by_admin
from raftlog.errors import Errors, RaftlogError
from raftlog.limits import ADMIN_RETRY_BACKOFF_S, MAX_PARTITIONS_PER_DATA_REQUEST
from raftlog.scram import DEFAULT_ITERATIONS, ScramError, make_credential
from raftlog.tls import ClientSecurity
from raftlog.v1 import (
    acls_pb2,
    acls_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    broker_pb2,
    broker_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
)

ENTITY_TYPES = ("brokers", "topics")


class Admin:
    def __init__(
        self,
        bootstrap_servers: str | list[str],
        timeout_ms: int = 15000,
        security_protocol: str | None = None,
        ssl_cafile: str | None = None,
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
    ):
        security = ClientSecurity.from_settings(
            security_protocol,
            ssl_cafile,
            ssl_certfile,
            ssl_keyfile,
            sasl_mechanism,
            sasl_plain_username,
            sasl_plain_password,
        )
        self._connection = Connection(bootstrap_servers, timeout_ms, security)
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

    def create_topic(
        self,
        name: str,
        partitions: int | None = 1,
        replication_factor: int | None = 3,
        config: dict[str, str] | None = None,
        validate_only: bool = False,
    ) -> str:
        """Creates a topic; None takes the broker default (num.partitions, default.replication.factor).

        Returns the topic id (hex) once every partition has a leader in the metadata of the node
        that answers (as Kafka's tools wait for metadata after CreateTopics), or at this client's
        timeout if the controller could not give every partition one (the topic exists either way).
        """
        request = admin_pb2.CreateTopicRequest(
            name=name,
            partitions=partitions or 0,
            replication_factor=replication_factor or 0,
            configs={k: str(v) for k, v in (config or {}).items()},
            validate_only=validate_only,
        )
        topic_id = self._write("CreateTopic", request).topic_id.hex()
        if not validate_only:
            self._wait_for_leaders(name)
        return topic_id

    def _wait_for_leaders(self, name: str) -> None:
        deadline = time.monotonic() + self._connection.timeout_s
        while time.monotonic() < deadline:
            answer = [t for t in self.metadata([name]).topics if t.name == name]
            if any(t.error_reason == "TOPIC_AUTHORIZATION_FAILED" for t in answer):
                return  # created, but this principal may not Describe it (Create does not imply Describe)
            topics = [t for t in answer if not t.error_reason]
            if topics and topics[0].partitions and all(p.leader >= 0 for p in topics[0].partitions):
                return
            time.sleep(ADMIN_RETRY_BACKOFF_S)

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

    def describe_topics(self, names: list[str] | None = None, include_configs: bool = False) -> list[dict[str, Any]]:
        """Topic, id, partitions with leader/replicas/ISR (Metadata: Describe on the topic), and
        with include_configs the topic's dynamic configs (DescribeConfigs on it, one more call per
        topic); "configs" is None when not asked, or when DescribeConfigs on that topic is refused
        (TOPIC_AUTHORIZATION_FAILED), so a principal that may only Describe still gets the rest."""
        response = self.metadata(names)
        described = []
        for topic in response.topics:
            if topic.error_reason:
                raise _topic_error(topic)
            configs: dict[str, str] | None = None
            if include_configs:
                try:
                    configs = {c["name"]: c["value"] for c in self.describe_configs("topics", topic.name)}
                except RaftlogError as exc:
                    if exc.error is not Errors.TOPIC_AUTHORIZATION_FAILED:
                        raise
            described.append(_topic_dict(topic, configs))
        return described

    def elect_leaders(
        self, election_type: str = "preferred", partitions: list[tuple[str, int]] | None = None
    ) -> list[dict[str, Any]]:
        kinds = {"preferred": admin_pb2.ElectLeadersRequest.PREFERRED, "unclean": admin_pb2.ElectLeadersRequest.UNCLEAN}
        if election_type not in kinds:
            raise RaftlogError("INVALID_REQUEST", "election type must be preferred or unclean")
        request = admin_pb2.ElectLeadersRequest(
            election_type=kinds[election_type],
            partitions=[admin_pb2.TopicPartitionRef(topic=t, partition=p) for t, p in partitions or []],
        )
        response = self._write("ElectLeaders", request)
        return [
            {
                "topic": r.partition.topic,
                "partition": r.partition.partition,
                "error": r.error_reason or None,
                "message": r.error_message or None,
            }
            for r in response.results
        ]

    def reassign_partition(self, topic: str, partition: int, replicas: list[int]) -> None:
        self.alter_partition_reassignments({(topic, partition): replicas})

    def alter_partition_reassignments(
        self, targets: dict[tuple[str, int], list[int] | None], validate_only: bool = False
    ) -> None:
        """Kafka's alterPartitionReassignments: (topic, partition) -> target replicas (preferred
        leader first), or None to cancel that partition's reassignment. All or nothing: one bad
        entry raises and nothing starts."""
        request = admin_pb2.AlterPartitionReassignmentsRequest(
            reassignments=[
                admin_pb2.PartitionReassignment(
                    partition=admin_pb2.TopicPartitionRef(topic=topic, partition=index),
                    replicas=replicas or [],
                    cancel=replicas is None,
                )
                for (topic, index), replicas in targets.items()
            ],
            validate_only=validate_only,
        )
        if validate_only:
            self._call("AlterPartitionReassignments", request)
        else:
            self._write("AlterPartitionReassignments", request)

    def list_partition_reassignments(self, partitions: list[tuple[str, int]] | None = None) -> list[dict[str, Any]]:
        """Kafka's listPartitionReassignments: the partitions being moved (all, or those named)."""
        request = admin_pb2.ListPartitionReassignmentsRequest(
            partitions=[admin_pb2.TopicPartitionRef(topic=t, partition=p) for t, p in partitions or []],
            min_metadata_offset=self._seen_offset,
        )
        response = self._call("ListPartitionReassignments", request)
        return [
            {
                "topic": r.partition.topic,
                "partition": r.partition.partition,
                "replicas": list(r.replicas),
                "adding_replicas": list(r.adding_replicas),
                "removing_replicas": list(r.removing_replicas),
            }
            for r in response.reassignments
        ]

    def unregister_broker(self, broker_id: int) -> None:
        """Kafka's unregisterBroker; refused while the broker is alive or holds a replica."""
        self._write("UnregisterBroker", admin_pb2.UnregisterBrokerRequest(broker_id=broker_id))

    # -- quorum, cluster, configs -----------------------------------------------------------

    def describe_quorum(self) -> dict[str, Any]:
        """Status and per-voter replication of the metadata quorum, like kafka-metadata-quorum."""
        response = self._call("DescribeQuorum", admin_pb2.DescribeQuorumRequest())
        leader_end = max((v.log_end_offset for v in response.voters if v.is_leader), default=0)
        rows = [(v, "Leader" if v.is_leader else "Follower") for v in response.voters]
        rows += [(v, "Observer") for v in response.observers]
        replication = [
            {
                "node_id": v.node_id,
                "log_end_offset": v.log_end_offset,
                "lag": max(0, leader_end - v.log_end_offset),
                "last_fetch_ms_ago": v.last_fetch_ms_ago,
                "last_caught_up_ms_ago": v.last_caught_up_ms_ago,
                "status": status,
            }
            for v, status in rows
        ]
        return {
            "cluster_id": response.cluster_id,
            "leader_id": response.leader_id,
            "leader_epoch": response.leader_epoch,
            "high_watermark": response.high_watermark,
            "max_follower_lag": max((r["lag"] for r in replication if r["status"] == "Follower"), default=0),
            "current_voters": [v.node_id for v in response.voters],
            "current_observers": [v.node_id for v in response.observers],
            "replication": replication,
        }

    def add_raft_voter(self, voter_id: int, address: str = "") -> dict[str, Any]:
        """Makes a caught-up observer a voter (KIP-853 AddRaftVoter); address "": the one it gave."""
        response = self._call("AddRaftVoter", admin_pb2.AddRaftVoterRequest(voter_id=voter_id, address=address))
        return {"offset": response.offset, "voters": list(response.voters)}

    def remove_raft_voter(self, voter_id: int) -> dict[str, Any]:
        """Removes one voter (KIP-853 RemoveRaftVoter); the leader may remove itself."""
        response = self._call("RemoveRaftVoter", admin_pb2.RemoveRaftVoterRequest(voter_id=voter_id))
        return {"offset": response.offset, "voters": list(response.voters)}

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
        ops = [
            admin_pb2.AlterConfigOp(name=k, op=admin_pb2.AlterConfigOp.SET, value=str(v))
            for k, v in (set_configs or {}).items()
        ]
        ops += [admin_pb2.AlterConfigOp(name=k, op=admin_pb2.AlterConfigOp.DELETE) for k in delete_configs or []]
        request = admin_pb2.IncrementalAlterConfigsRequest(
            resource=admin_pb2.ConfigResource(type=entity_type, name=entity_name), ops=ops, validate_only=validate_only
        )
        return self._write("IncrementalAlterConfigs", request).offset

    # -- ACLs (kafka-acls; the cluster needs authorizer.class.name, else SECURITY_DISABLED) -----

    def _acl_call(self, method: str, request):
        return self._connection.call(acls_pb2_grpc.AclServiceStub, method, request)

    def create_acls(self, bindings: list[AclBinding]) -> tuple[int, list[AclBinding]]:
        """Adds the bindings (one committed change; existing ones are left as they are); returns
        its offset and the bindings it added, as the controller answered (the others existed)."""
        response = self._acl_call("CreateAcls", acls_pb2.CreateAclsRequest(bindings=[b.to_pb() for b in bindings]))
        self._seen_offset = max(self._seen_offset, response.offset)
        return response.offset, [AclBinding.from_pb(b) for b in response.created]

    def describe_acls(self, acl_filter: AclFilter | None = None) -> list[AclBinding]:
        request = acls_pb2.DescribeAclsRequest(
            filter=(acl_filter or AclFilter()).to_pb(), min_metadata_offset=self._seen_offset
        )
        return [AclBinding.from_pb(b) for b in self._acl_call("DescribeAcls", request).bindings]

    def delete_acls(self, filters: list[AclFilter]) -> list[AclBinding]:
        """Removes every binding one of the filters matches; returns the removed ones."""
        response = self._acl_call("DeleteAcls", acls_pb2.DeleteAclsRequest(filters=[f.to_pb() for f in filters]))
        self._seen_offset = max(self._seen_offset, response.offset)
        return [AclBinding.from_pb(b) for b in response.deleted]

    def benchmark_quorum(
        self, count: int, concurrency: int, payload_bytes: int = 64
    ) -> admin_pb2.BenchmarkQuorumResponse:
        request = admin_pb2.BenchmarkQuorumRequest(count=count, concurrency=concurrency, payload_bytes=payload_bytes)
        return self._call("BenchmarkQuorum", request)

    # -- SCRAM credentials (Kafka's AlterUserScramCredentials / DescribeUserScramCredentials) --

    def alter_user_scram_credentials(
        self,
        upsertions: list[tuple[str, str, str, int]] | None = None,
        deletions: list[tuple[str, str]] | None = None,
    ) -> None:
        """Sets credentials ((user, mechanism, password, iterations)) and deletes them ((user,
        mechanism)), all or none. The salt and keys are made here (raftlog/scram.py): the password
        never leaves this process."""
        request = admin_pb2.AlterUserScramCredentialsRequest()
        for user, mechanism, password, iterations in upsertions or []:
            try:
                credential = make_credential(mechanism, password, iterations)
            except ScramError as exc:
                raise RaftlogError("UNACCEPTABLE_CREDENTIAL", f"user {user!r}: {exc}") from None
            request.upsertions.append(
                admin_pb2.ScramCredentialUpsertion(
                    name=user,
                    mechanism=credential.mechanism,
                    iterations=credential.iterations,
                    salt=credential.salt,
                    stored_key=credential.stored_key,
                    server_key=credential.server_key,
                )
            )
        for user, mechanism in deletions or []:
            request.deletions.append(admin_pb2.ScramCredentialDeletion(name=user, mechanism=mechanism.upper()))
        self._write("AlterUserScramCredentials", request)

    def upsert_scram_credential(
        self, user: str, mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS
    ) -> None:
        self.alter_user_scram_credentials(upsertions=[(user, mechanism, password, iterations)])

    def delete_scram_credential(self, user: str, mechanism: str) -> None:
        self.alter_user_scram_credentials(deletions=[(user, mechanism)])

    def describe_user_scram_credentials(self, users: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
        """user -> [{"mechanism", "iterations"}] (never a salt or a key); a named user without
        credentials raises RESOURCE_NOT_FOUND."""
        request = admin_pb2.DescribeUserScramCredentialsRequest(
            users=users or [], min_metadata_offset=self._seen_offset
        )
        response = self._call("DescribeUserScramCredentials", request)
        described = {}
        for result in response.results:
            if result.error_reason:
                raise RaftlogError.from_reason(result.error_reason, result.error_message)
            described[result.user] = [
                {"mechanism": c.mechanism, "iterations": c.iterations} for c in result.credentials
            ]
        return described

    def _broker_address(self, entity_name: str) -> str:
        for broker in self.describe_cluster()["brokers"]:
            if str(broker["id"]) == entity_name:
                return f"{broker['host']}:{broker['port']}"
        raise RaftlogError("UNKNOWN_BROKER", f"broker {entity_name!r} is not registered")

    # -- consumer groups --------------------------------------------------------------------

    def _group_call(self, group_id: str, method: str, request):
        """A call to the group's coordinator, found again while it moves (NOT_COORDINATOR)."""
        deadline = time.monotonic() + self._connection.timeout_s
        while True:
            found = self._connection.call(
                group_pb2_grpc.GroupServiceStub, "FindCoordinator", group_pb2.FindCoordinatorRequest(group_id=group_id)
            )
            address = f"{found.host}:{found.port}"
            try:
                stub = group_pb2_grpc.GroupServiceStub(self._connection.channel(address))
                return getattr(stub, method)(request, timeout=max(0.5, deadline - time.monotonic()))
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            if not retried_by_admin(error) or time.monotonic() > deadline:
                raise error
            time.sleep(0.1)

    def list_groups(self) -> list[dict[str, Any]]:
        """Every group (GROUP, TYPE, STATE), asked of each broker (each lists the groups it coordinates)."""
        groups: dict[str, dict[str, Any]] = {}
        for broker in self.describe_cluster()["brokers"]:
            if broker["fenced"]:
                continue
            address = f"{broker['host']}:{broker['port']}"
            response = self._connection.call(
                group_pb2_grpc.GroupServiceStub, "ListGroups", group_pb2.ListGroupsRequest(), address
            )
            for g in response.groups:
                groups[g.group_id] = {"group": g.group_id, "type": g.group_type, "state": g.state}
        return [groups[name] for name in sorted(groups)]

    def describe_group(self, group_id: str) -> dict[str, Any]:
        r = self._group_call(group_id, "DescribeGroups", group_pb2.DescribeGroupsRequest(group_id=group_id))
        return {
            "group": r.group_id,
            "type": r.group_type or "consumer",
            "state": r.state,
            "group_epoch": r.group_epoch,
            "assignment_epoch": r.assignment_epoch,
            "assignor": r.assignor,
            "coordinator": r.coordinator_id,
            "members": [
                {
                    "member_id": m.member_id,
                    "instance_id": m.instance_id or None,
                    "client_id": m.client_id,
                    "host": m.client_host,
                    "member_epoch": m.member_epoch,
                    "member_state": m.member_state,
                    "subscribed_topics": list(m.subscribed_topic_names),
                    "subscribed_regex": m.subscribed_regex or None,
                    "assignment": _tp_list(m.assignment),
                    "target_assignment": _tp_list(m.target_assignment),
                }
                for m in r.members
            ],
        }

    def delete_group(self, group_id: str) -> None:
        self._group_call(group_id, "DeleteGroups", group_pb2.DeleteGroupsRequest(group_id=group_id))

    def list_group_offsets(
        self, group_id: str, partitions: list[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """Committed offsets of a group (partitions without one are left out)."""
        request = group_pb2.OffsetFetchRequest(group_id=group_id, partitions=_tp_pb(partitions or []))
        response = self._group_call(group_id, "OffsetFetch", request)
        return {(o.topic, o.partition): o.offset for o in response.offsets if o.offset >= 0}

    def alter_group_offsets(self, group_id: str, offsets: dict[tuple[str, int], int]) -> None:
        """Sets committed offsets of a group with no active members (reset-offsets)."""
        request = group_pb2.OffsetCommitRequest(
            group_id=group_id,
            member_id="",
            member_epoch=-1,
            offsets=[
                group_pb2.OffsetCommitPartition(topic=t, partition=p, offset=o, leader_epoch=-1)
                for (t, p), o in sorted(offsets.items())
            ],
        )
        _raise_first(self._group_call(group_id, "OffsetCommit", request).results)

    def delete_group_offsets(self, group_id: str, partitions: list[tuple[str, int]]) -> None:
        request = group_pb2.OffsetDeleteRequest(group_id=group_id, partitions=_tp_pb(partitions))
        _raise_first(self._group_call(group_id, "OffsetDelete", request).results)

    def list_offsets(self, partitions: list[tuple[str, int]], timestamp: int) -> dict[tuple[str, int], int]:
        """ListOffsets at each partition's leader: -2 earliest, -1 latest (the high watermark), or
        the first offset with a timestamp >= this (ms); -1 where there is none."""
        result: dict[tuple[str, int], int] = {}
        for address, tps in self._by_leader(partitions).items():
            request = broker_pb2.ListOffsetsRequest(
                partitions=[broker_pb2.ListOffsetsPartition(topic=t, partition=p, timestamp=timestamp) for t, p in tps]
            )
            response = self._connection.call(broker_pb2_grpc.BrokerServiceStub, "ListOffsets", request, address)
            for r in response.results:
                if r.error_reason:
                    raise RaftlogError.from_reason(r.error_reason, r.error_message)
                result[(r.topic, r.partition)] = r.offset
        return result

    def list_offsets_each(
        self, partitions: list[tuple[str, int]], timestamp: int
    ) -> dict[tuple[str, int], int | RaftlogError]:
        """list_offsets, with each partition's own answer: its offset, or the error its leader (or
        the metadata: no leader yet) gave for it, so one unserved partition does not hide the rest."""
        metadata = self.metadata(sorted({t for t, _ in partitions}))
        brokers = {b.broker_id: f"{b.host}:{b.port}" for b in metadata.brokers}
        leaders = {(t.name, p.partition): p.leader for t in metadata.topics if not t.error_reason for p in t.partitions}
        result: dict[tuple[str, int], int | RaftlogError] = {}
        grouped: dict[str, list[tuple[str, int]]] = {}
        for tp in partitions:
            address = brokers.get(leaders.get(tp, -1))
            if address is None:
                result[tp] = RaftlogError("LEADER_NOT_AVAILABLE", f"{tp[0]}-{tp[1]} has no leader right now")
            else:
                grouped.setdefault(address, []).append(tp)
        for address, tps in grouped.items():
            for start in range(0, len(tps), MAX_PARTITIONS_PER_DATA_REQUEST):
                request = broker_pb2.ListOffsetsRequest(
                    partitions=[
                        broker_pb2.ListOffsetsPartition(topic=t, partition=p, timestamp=timestamp)
                        for t, p in tps[start : start + MAX_PARTITIONS_PER_DATA_REQUEST]
                    ]
                )
                response = self._connection.call(broker_pb2_grpc.BrokerServiceStub, "ListOffsets", request, address)
                for r in response.results:
                    answer = RaftlogError.from_reason(r.error_reason, r.error_message) if r.error_reason else r.offset
                    result[(r.topic, r.partition)] = answer
        return result

    def record_timestamps(self, offsets: dict[tuple[str, int], int]) -> dict[tuple[str, int], int | None]:
        """The timestamp (ms) of the record at each offset (None where there is none yet)."""
        result: dict[tuple[str, int], int | None] = {tp: None for tp in offsets}
        for address, tps in self._by_leader(list(offsets)).items():
            request = broker_pb2.FetchRequest(
                max_wait_ms=0,
                min_bytes=0,
                max_bytes=1 << 20,
                partitions=[
                    broker_pb2.FetchPartition(
                        topic=t,
                        partition=p,
                        fetch_offset=offsets[(t, p)],
                        partition_max_bytes=64 * 1024,
                        current_leader_epoch=-1,
                    )
                    for t, p in tps
                ],
            )
            response = self._connection.call(broker_pb2_grpc.BrokerServiceStub, "Fetch", request, address)
            for r in response.results:
                if r.error_reason:
                    continue
                for offset, timestamp, *_ in record_codec.decode_records(r.records):
                    if offset >= offsets[(r.topic, r.partition)]:
                        result[(r.topic, r.partition)] = timestamp
                        break
        return result

    def _by_leader(self, partitions: list[tuple[str, int]]) -> dict[str, list[tuple[str, int]]]:
        metadata = self.metadata(sorted({t for t, _ in partitions}))
        brokers = {b.broker_id: f"{b.host}:{b.port}" for b in metadata.brokers}
        leaders: dict[tuple[str, int], int] = {}
        for topic in metadata.topics:
            if topic.error_reason:
                raise _topic_error(topic)
            for p in topic.partitions:
                leaders[(topic.name, p.partition)] = p.leader
        grouped: dict[str, list[tuple[str, int]]] = {}
        for tp in partitions:
            if tp not in leaders:
                raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{tp[0]}-{tp[1]} does not exist")
            address = brokers.get(leaders[tp])
            if address is None:
                raise RaftlogError("LEADER_NOT_AVAILABLE", f"{tp[0]}-{tp[1]} has no leader right now")
            grouped.setdefault(address, []).append(tp)
        return grouped

    def describe_group_offsets(self, group_id: str) -> list[dict[str, Any]]:
        """kafka-consumer-groups' offsets view, plus LAG-MS: the age of the oldest record the group
        has not committed (0 when there is no lag)."""
        group = self.describe_group(group_id)
        owners: dict[tuple[str, int], dict[str, Any]] = {}
        for member in group["members"]:
            for topic, partition in member["assignment"]:
                owners[(topic, partition)] = member
        committed = self.list_group_offsets(group_id)
        partitions = sorted(set(committed) | set(owners))
        if not partitions:
            return []
        ends = self.list_offsets(partitions, -1)
        lagging = {tp: committed[tp] for tp in partitions if tp in committed and ends[tp] > committed[tp]}
        timestamps = self.record_timestamps(lagging) if lagging else {}
        now_ms = int(time.time() * 1000)
        rows = []
        for tp in partitions:
            current = committed.get(tp)
            owner = owners.get(tp)
            lag = None if current is None else max(0, ends[tp] - current)
            stamp = timestamps.get(tp)
            rows.append(
                {
                    "group": group_id,
                    "topic": tp[0],
                    "partition": tp[1],
                    "current_offset": current,
                    "log_end_offset": ends[tp],
                    "lag": lag,
                    "lag_ms": (max(0, now_ms - stamp) if stamp is not None else 0)
                    if lag
                    else (0 if lag == 0 else None),
                    "consumer_id": owner["member_id"] if owner else None,
                    "host": owner["host"] if owner else None,
                    "client_id": owner["client_id"] if owner else None,
                }
            )
        return rows


def _tp_pb(partitions: list[tuple[str, int]]) -> list[group_pb2.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return [group_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def _tp_list(items) -> list[list]:
    return [[tp.topic, p] for tp in items for p in tp.partitions]


def _topic_error(topic: broker_pb2.TopicMetadata) -> RaftlogError:
    if topic.error_reason == "TOPIC_AUTHORIZATION_FAILED":
        return RaftlogError(topic.error_reason, f"this client's principal may not describe topic {topic.name!r}")
    return RaftlogError.from_reason(topic.error_reason, f"topic {topic.name!r} does not exist")


def _raise_first(results) -> None:
    for r in results:
        if r.error_reason:
            raise RaftlogError.from_reason(r.error_reason, f"{r.topic}-{r.partition}: {r.error_message}")


def _check_entity_type(entity_type: str) -> None:
    if entity_type not in ENTITY_TYPES:
        raise RaftlogError("INVALID_REQUEST", f"entity type must be one of {', '.join(ENTITY_TYPES)}")


def _topic_dict(topic: broker_pb2.TopicMetadata, configs: dict[str, str] | None) -> dict[str, Any]:
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
