"""AdminService: quorum and cluster description, configs, topics, partitions, the quorum benchmark.

Reads are served from this node's metadata image, as Kafka brokers serve metadata from
their cache; a request may name the metadata offset it must see (read-your-writes), and
the node waits, bounded, until it has applied that far. Writes and the quorum view go to
the active controller, forwarded there when this node is not it.
"""

from __future__ import annotations

from raftlog import audit
from raftlog import config as node_config
from raftlog.api.authorization import RequestAuthorizer
from raftlog.api.forwarding import forward_to_controller, was_forwarded
from raftlog.api.reads import await_applied
from raftlog.api.status import rpc
from raftlog.authorizer.authorizer import Caller
from raftlog.channels import Peers
from raftlog.controller.active import ActiveController
from raftlog.controller.reassignment import ReassignmentEntry
from raftlog.errors import RaftlogError, Scope
from raftlog.limits import (
    BENCHMARK_FORWARD_TIMEOUT_S,
    MAX_BENCHMARK_CONCURRENCY,
    MAX_BENCHMARK_PAYLOAD_BYTES,
    MAX_BENCHMARK_WRITES,
    MAX_PARTITIONS_REASSIGNED_PER_REQUEST,
)
from raftlog.limits import RAFT_VOTER_CHANGE_TIMEOUT_S as VOTER_CHANGE_TIMEOUT_S
from raftlog.metadata.image import MetadataImage
from raftlog.node_ids import NO_NODE
from raftlog.principals import request_principal
from raftlog.raft.membership import MembershipError
from raftlog.raft.messages import NotLeaderError
from raftlog.topic_config import effective_topic_config
from raftlog.v1 import admin_pb2, admin_pb2_grpc


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(
        self,
        cluster_id: str,
        config: node_config.NodeConfig,
        driver,
        controller: ActiveController,
        peers: Peers,
        authorizer: RequestAuthorizer,
        metrics=None,
        listener: str | None = None,
    ):
        self._cluster_id = cluster_id
        self._auth = authorizer
        self._listener = listener  # the listener this servicer's server binds: brokers are described by it
        self._config = config
        self._driver = driver
        self._controller = controller
        self._peers = peers
        self.metrics = metrics

    async def _forward_to_controller(self, method: str, request, context, timeout_s: float = 10.0):
        """The active controller's answer when this node is not it; None when it is (forwarding.py)."""
        return await forward_to_controller(
            self._driver, self._peers, admin_pb2_grpc.AdminServiceStub, method, request, context, timeout_s
        )

    # -- quorum and cluster -----------------------------------------------------------------

    @rpc("DescribeQuorum")
    async def DescribeQuorum(self, request, context):
        self._auth.check(self._auth.caller(context), "DescribeQuorum")
        forwarded = await self._forward_to_controller("DescribeQuorum", request, context)
        if forwarded is not None:
            return forwarded
        status = self._driver.status()
        response = admin_pb2.DescribeQuorumResponse(
            cluster_id=self._cluster_id,
            leader_id=status.node_id,
            leader_epoch=status.term,
            high_watermark=status.commit_index,
        )
        for voter_id in sorted(status.voters):
            response.voters.append(_voter_state(status, voter_id))
        for observer_id in sorted(n for n, p in status.progress.items() if not p.voter):
            response.observers.append(_voter_state(status, observer_id))
        return response

    @rpc("AddRaftVoter")
    async def AddRaftVoter(self, request, context):
        self._auth.check(self._auth.caller(context), "AddRaftVoter")
        forwarded = await self._forward_to_controller("AddRaftVoter", request, context, VOTER_CHANGE_TIMEOUT_S)
        if forwarded is not None:
            return forwarded
        if request.address:
            try:
                node_config.parse_address(request.address, "address")
            except node_config.ConfigError as exc:
                raise RaftlogError("INVALID_REQUEST", str(exc)) from None
        return await self._change_voters(add=(request.voter_id, request.address))

    @rpc("RemoveRaftVoter")
    async def RemoveRaftVoter(self, request, context):
        self._auth.check(self._auth.caller(context), "RemoveRaftVoter")
        forwarded = await self._forward_to_controller("RemoveRaftVoter", request, context, VOTER_CHANGE_TIMEOUT_S)
        if forwarded is not None:
            return forwarded
        return await self._change_voters(remove=request.voter_id)

    async def _change_voters(self, add=None, remove=None) -> admin_pb2.RaftVoterChangeResponse:
        try:
            index = await self._driver.change_voters(
                add=add, remove=remove, timeout_ms=int(VOTER_CHANGE_TIMEOUT_S * 1000)
            )
        except MembershipError as exc:
            raise RaftlogError(exc.reason, exc.message) from None
        except NotLeaderError as exc:
            raise RaftlogError("NOT_CONTROLLER", str(exc), exc.leader_id) from None
        except TimeoutError as exc:
            raise RaftlogError("REQUEST_TIMED_OUT", str(exc)) from None
        return admin_pb2.RaftVoterChangeResponse(offset=index, voters=self._driver.status().voters)

    @rpc("DescribeCluster")
    async def DescribeCluster(self, request, context):
        return await self.describe_cluster(request)

    async def describe_cluster(self, request: admin_pb2.DescribeClusterRequest) -> admin_pb2.DescribeClusterResponse:
        """DescribeCluster's answer for this servicer's listener (the gRPC and Kafka edges both call it)."""
        await await_applied(self._driver, request.min_metadata_offset)
        status = self._driver.status()
        image = self._controller.image
        response = admin_pb2.DescribeClusterResponse(
            cluster_id=self._cluster_id,
            controller_id=NO_NODE if status.leader_id is None else status.leader_id,
            metadata_offset=image.offset,
        )
        for broker in sorted(image.brokers.values(), key=lambda b: b.broker_id):
            response.brokers.append(broker.to_registration(self._listener))
        return response

    # -- configs ----------------------------------------------------------------------------

    @rpc("DescribeConfigs")
    async def DescribeConfigs(self, request, context):
        self._auth.check(self._auth.caller(context), *config_api("Describe", request.resource))
        return await self.describe_configs(request)

    async def describe_configs(self, request: admin_pb2.DescribeConfigsRequest) -> admin_pb2.DescribeConfigsResponse:
        resource = request.resource
        await await_applied(self._driver, request.min_metadata_offset)
        image = self._controller.image
        if resource.type == "brokers":
            entries = _broker_config_entries(image, self._config, resource.name, request.include_static)
        elif resource.type == "topics":
            entries = _topic_config_entries(image, self._config, resource.name, request.include_static)
        else:
            raise RaftlogError("INVALID_REQUEST", f"entity type {resource.type!r} is not brokers or topics")
        return admin_pb2.DescribeConfigsResponse(resource=resource, entries=entries)

    @rpc("IncrementalAlterConfigs")
    async def IncrementalAlterConfigs(self, request, context):
        self._auth.check(self._auth.caller(context), *config_api("Alter", request.resource))
        return await self.incremental_alter_configs(request, context)

    async def incremental_alter_configs(
        self, request: admin_pb2.IncrementalAlterConfigsRequest, context=None
    ) -> admin_pb2.IncrementalAlterConfigsResponse:
        """Changes one resource's configs on the active controller (forwarded there when this node is not it)."""
        forwarded = await self._forward_to_controller("IncrementalAlterConfigs", request, context)
        if forwarded is not None:
            return forwarded
        offset = await self._controller.alter_configs(request.resource, list(request.ops), request.validate_only)
        return admin_pb2.IncrementalAlterConfigsResponse(offset=offset)

    # -- topics and partitions --------------------------------------------------------------

    @rpc("CreateTopic")
    async def CreateTopic(self, request, context):
        self._auth.check(self._auth.caller(context), "CreateTopic", [request.name])
        return await self.create_topic(request, context)

    async def create_topic(self, request: admin_pb2.CreateTopicRequest, context=None) -> admin_pb2.CreateTopicResponse:
        """Creates a topic on the active controller, forwarded there when this node is not it."""
        forwarded = await self._forward_to_controller("CreateTopic", request, context)
        if forwarded is not None:
            return forwarded
        offset, topic_id = await self._controller.create_topic(
            request.name, request.partitions, request.replication_factor, dict(request.configs), request.validate_only
        )
        return admin_pb2.CreateTopicResponse(topic_id=topic_id, offset=offset)

    @rpc("DeleteTopic")
    async def DeleteTopic(self, request, context):
        self._auth.check(self._auth.caller(context), "DeleteTopic", [request.name])
        return await self.delete_topic(request, context)

    async def delete_topic(self, request: admin_pb2.DeleteTopicRequest, context=None) -> admin_pb2.DeleteTopicResponse:
        forwarded = await self._forward_to_controller("DeleteTopic", request, context)
        if forwarded is not None:
            return forwarded
        return admin_pb2.DeleteTopicResponse(offset=await self._controller.delete_topic(request.name))

    @rpc("CreatePartitions")
    async def CreatePartitions(self, request, context):
        self._auth.check(self._auth.caller(context), "CreatePartitions", [request.name])
        return await self.create_partitions(request, context)

    async def create_partitions(
        self, request: admin_pb2.CreatePartitionsRequest, context=None
    ) -> admin_pb2.CreatePartitionsResponse:
        forwarded = await self._forward_to_controller("CreatePartitions", request, context)
        if forwarded is not None:
            return forwarded
        offset = await self._controller.create_partitions(request.name, request.total_count, request.validate_only)
        return admin_pb2.CreatePartitionsResponse(offset=offset)

    @rpc("ElectLeaders")
    async def ElectLeaders(self, request, context):
        self._auth.check(self._auth.caller(context), "ElectLeaders")
        forwarded = await self._forward_to_controller("ElectLeaders", request, context)
        if forwarded is not None:
            return forwarded
        unclean = request.election_type == admin_pb2.ElectLeadersRequest.UNCLEAN
        targets = list(request.partitions) or _all_partitions(self._controller.image)
        response = admin_pb2.ElectLeadersResponse()
        for target in targets:
            result = admin_pb2.ElectionResult(partition=target)
            try:
                response.offset = await self._controller.elect_leader(target.topic, target.partition, unclean)
            except RaftlogError as exc:
                if exc.error.scope is Scope.CALL:  # the call failed, not this partition's election
                    raise
                result.error_reason, result.error_message = exc.reason, exc.message
            response.results.append(result)
        return response

    @rpc("AlterPartitionReassignments")
    async def AlterPartitionReassignments(self, request, context):
        self._auth.check(self._auth.caller(context), "AlterPartitionReassignments")
        forwarded = await self._forward_to_controller("AlterPartitionReassignments", request, context)
        if forwarded is not None:
            return forwarded
        if len(request.reassignments) > MAX_PARTITIONS_REASSIGNED_PER_REQUEST:
            raise RaftlogError(
                "INVALID_REQUEST",
                f"{len(request.reassignments)} partitions in one reassignment; at most "
                f"{MAX_PARTITIONS_REASSIGNED_PER_REQUEST} are allowed",
            )
        entries = [
            ReassignmentEntry(r.partition.topic, r.partition.partition, tuple(r.replicas), r.cancel)
            for r in request.reassignments
        ]
        offset = await self._controller.alter_reassignments(entries, request.validate_only)
        return admin_pb2.AlterPartitionReassignmentsResponse(offset=offset)

    # -- SCRAM credentials (Kafka's AlterUserScramCredentials / DescribeUserScramCredentials) --

    @property
    def image(self) -> MetadataImage:
        """This node's metadata image (what reads are served from)."""
        return self._controller.image

    def authorize_credentials(self, caller: Caller, operation: str, resource: str) -> str:
        """The principal a credential API runs as, if it may. With ACLs on: what
        raftlog.authorizer.required says (Alter / Describe on the cluster, as Kafka), through the
        gate like every other API. With ACLs off: a super user (``super.users``) on any listener,
        or any caller on an internal listener (reachable in a secure cluster only with a
        certificate of the cluster's CA; in a PLAINTEXT development cluster by anyone, as Kafka
        without an authorizer allows everything). Anyone else: CLUSTER_AUTHORIZATION_FAILED,
        audited. The gRPC methods and the Kafka listener's (raftlog/kafka/scram_handlers.py) ask
        this one policy."""
        if self._auth.enabled:
            self._auth.check(caller, operation)
            return caller.principal
        principal = request_principal()  # the listener set it (SASL login, certificate), else ANONYMOUS
        if self._listener in self._config.security.internal or principal in self._config.super_users:
            return principal
        reason = f"{principal} is not a super user and listener {self._listener} is not internal"
        audit.credential_change_refused(self.metrics, principal, operation, resource, reason)
        raise RaftlogError("CLUSTER_AUTHORIZATION_FAILED", f"{operation} needs a super user: {reason}")

    @rpc("AlterUserScramCredentials")
    async def AlterUserScramCredentials(self, request, context):
        users = sorted({c.name for c in (*request.upsertions, *request.deletions)})
        principal = self.authorize_credentials(
            self._auth.caller(context), "AlterUserScramCredentials", ",".join(f"User:{u}" for u in users) or "-"
        )
        return await self.alter_user_scram_credentials(request, principal, context)

    async def alter_user_scram_credentials(
        self, request: admin_pb2.AlterUserScramCredentialsRequest, principal: str, context=None
    ) -> admin_pb2.AlterUserScramCredentialsResponse:
        """All of the request's changes in one entry on the active controller (forwarded there when
        this node is not it), audited once, where the client came in. `principal` is authorized."""
        forwarded = await self._forward_to_controller("AlterUserScramCredentials", request, context)
        if forwarded is not None:
            response = forwarded
        else:
            offset = await self._controller.alter_scram_credentials(list(request.upsertions), list(request.deletions))
            response = admin_pb2.AlterUserScramCredentialsResponse(offset=offset)
        if context is None or not was_forwarded(context):
            for upsertion in request.upsertions:
                audit.credential_changed(
                    self.metrics, principal, "UpsertScramCredential", upsertion.name, upsertion.mechanism
                )
            for deletion in request.deletions:
                audit.credential_changed(
                    self.metrics, principal, "DeleteScramCredential", deletion.name, deletion.mechanism
                )
        return response

    @rpc("DescribeUserScramCredentials")
    async def DescribeUserScramCredentials(self, request, context):
        self.authorize_credentials(self._auth.caller(context), "DescribeUserScramCredentials", "Cluster:kafka-cluster")
        return await self.describe_user_scram_credentials(request)

    async def describe_user_scram_credentials(
        self, request: admin_pb2.DescribeUserScramCredentialsRequest
    ) -> admin_pb2.DescribeUserScramCredentialsResponse:
        """Mechanism and iterations of each user's credentials (never key material), from this
        node's image; a named user without any: RESOURCE_NOT_FOUND."""
        await await_applied(self._driver, request.min_metadata_offset)
        by_user: dict[str, list[admin_pb2.ScramCredentialInfo]] = {}
        for (user, mechanism), credential in sorted(self._controller.image.scram_credentials.items()):
            by_user.setdefault(user, []).append(
                admin_pb2.ScramCredentialInfo(mechanism=mechanism, iterations=credential.iterations)
            )
        response = admin_pb2.DescribeUserScramCredentialsResponse()
        for user in list(dict.fromkeys(request.users)) or sorted(by_user):
            result = admin_pb2.UserScramCredentials(user=user, credentials=by_user.get(user, []))
            if user not in by_user:
                result.error_reason = "RESOURCE_NOT_FOUND"
                result.error_message = f"user {user!r} has no SCRAM credentials"
            response.results.append(result)
        return response

    @rpc("ListPartitionReassignments")
    async def ListPartitionReassignments(self, request, context):
        # The active controller answers (as in KRaft), so a tool polling for completion never reads
        # a node that has not applied the latest change yet (`--verify` clears throttles by it).
        self._auth.check(self._auth.caller(context), "ListPartitionReassignments")
        forwarded = await self._forward_to_controller("ListPartitionReassignments", request, context)
        if forwarded is not None:
            return forwarded
        await await_applied(self._driver, request.min_metadata_offset)
        image = self._controller.image
        wanted = {(p.topic, p.partition) for p in request.partitions}
        response = admin_pb2.ListPartitionReassignmentsResponse(metadata_offset=image.offset)
        for name, partition in image.partitions():
            if wanted and (name, partition.partition) not in wanted:
                continue
            if partition.adding_replicas or partition.removing_replicas:
                response.reassignments.append(
                    admin_pb2.OngoingReassignment(
                        partition=admin_pb2.TopicPartitionRef(topic=name, partition=partition.partition),
                        replicas=partition.replicas,
                        adding_replicas=partition.adding_replicas,
                        removing_replicas=partition.removing_replicas,
                    )
                )
        return response

    @rpc("UnregisterBroker")
    async def UnregisterBroker(self, request, context):
        self._auth.check(self._auth.caller(context), "UnregisterBroker")
        forwarded = await self._forward_to_controller("UnregisterBroker", request, context)
        if forwarded is not None:
            return forwarded
        offset = await self._controller.unregister_broker(request.broker_id)
        return admin_pb2.UnregisterBrokerResponse(offset=offset)

    # -- benchmark --------------------------------------------------------------------------

    @rpc("BenchmarkQuorum")
    async def BenchmarkQuorum(self, request, context):
        self._auth.check(self._auth.caller(context), "BenchmarkQuorum")
        for name, value, low, high in (
            ("count", request.count, 1, MAX_BENCHMARK_WRITES),
            ("concurrency", request.concurrency, 1, MAX_BENCHMARK_CONCURRENCY),
            ("payload_bytes", request.payload_bytes, 0, MAX_BENCHMARK_PAYLOAD_BYTES),
        ):
            if not low <= value <= high:
                raise RaftlogError("INVALID_REQUEST", f"{name} must be {low}..{high}, got {value}")
        forwarded = await self._forward_to_controller("BenchmarkQuorum", request, context, BENCHMARK_FORWARD_TIMEOUT_S)
        if forwarded is not None:
            return forwarded
        committed, elapsed_s, latencies_ms = await self._controller.benchmark(
            request.count, request.concurrency, request.payload_bytes
        )
        return admin_pb2.BenchmarkQuorumResponse(committed=committed, elapsed_s=elapsed_s, latencies_ms=latencies_ms)


def config_api(action: str, resource: admin_pb2.ConfigResource) -> tuple[str, list[str]]:
    """(the API name in raftlog.authorizer.required, the topics it names) of a configs request."""
    if resource.type == "topics":
        return f"{action}TopicConfigs", [resource.name]
    return f"{action}BrokerConfigs", []


def _all_partitions(image: MetadataImage) -> list[admin_pb2.TopicPartitionRef]:
    return [admin_pb2.TopicPartitionRef(topic=name, partition=p.partition) for name, p in image.partitions()]


def _voter_state(status, voter_id: int) -> admin_pb2.VoterState:
    if voter_id == status.node_id:
        return admin_pb2.VoterState(
            node_id=voter_id,
            log_end_offset=status.last_index,
            last_fetch_ms_ago=0,
            last_caught_up_ms_ago=0,
            is_leader=True,
        )
    progress = status.progress.get(voter_id)
    if progress is None:
        return admin_pb2.VoterState(node_id=voter_id, log_end_offset=0, last_fetch_ms_ago=-1, last_caught_up_ms_ago=-1)
    return admin_pb2.VoterState(
        node_id=voter_id,
        log_end_offset=progress.match_index,
        last_fetch_ms_ago=_ms_or_unknown(progress.last_contact_ms_ago),
        last_caught_up_ms_ago=_ms_or_unknown(progress.last_caught_up_ms_ago),
    )


def _ms_or_unknown(value: float | None) -> int:
    return -1 if value is None else int(value)


def _broker_values(image: MetadataImage, config: node_config.NodeConfig) -> dict:
    """Broker-level values in force: static config overlaid with the dynamic cluster default."""
    return {**config.values, **image.dynamic_config("brokers", "")}


def _broker_config_entries(image, config: node_config.NodeConfig, broker_name: str, include_static: bool):
    """Effective broker configs by Kafka's precedence: per-broker dynamic > default dynamic > static > default."""
    per_broker = image.dynamic_config("brokers", broker_name) if broker_name else {}
    cluster_default = image.dynamic_config("brokers", "")
    entries = []
    for key in sorted(node_config.SCHEMA.values(), key=lambda k: k.name):
        if key.name in per_broker:
            value, source = per_broker[key.name], "DYNAMIC_BROKER_CONFIG"
        elif key.name in cluster_default:
            value, source = cluster_default[key.name], "DYNAMIC_DEFAULT_BROKER_CONFIG"
        elif not include_static:
            continue
        elif key.name in config.explicit:
            value, source = node_config.format_value(config[key.name]), "STATIC_BROKER_CONFIG"
        else:
            value, source = node_config.format_value(config[key.name]), "DEFAULT_CONFIG"
        entries.append(admin_pb2.ConfigEntry(name=key.name, value=value, source=source, read_only=not key.dynamic))
    return entries


def _topic_config_entries(image: MetadataImage, config: node_config.NodeConfig, topic_name: str, include_static: bool):
    if image.topic(topic_name) is None:
        raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"topic {topic_name!r} does not exist")
    effective = effective_topic_config(image.dynamic_config("topics", topic_name), _broker_values(image, config))
    return [
        admin_pb2.ConfigEntry(name=name, value=value, source=source, read_only=False)
        for name, (value, source) in sorted(effective.items())
        if include_static or source == "DYNAMIC_TOPIC_CONFIG"
    ]
