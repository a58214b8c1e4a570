"""BrokerService (public data plane) and ReplicationService (followers' fetches)."""

from __future__ import annotations

from raftlog.api.reads import await_applied
from raftlog.api.status import rpc
from raftlog.broker.producer_ids import ProducerIdManager
from raftlog.metadata.image import MetadataImage, PartitionInfo
from raftlog.node_ids import NO_NODE
from raftlog.replication import requests
from raftlog.replication.manager import ReplicaManager
from raftlog.tls import PeerAuthenticator
from raftlog.v1 import broker_pb2, broker_pb2_grpc, replication_pb2_grpc


class BrokerServicer(broker_pb2_grpc.BrokerServiceServicer):
    def __init__(
        self,
        cluster_id: str,
        driver,
        state_machine,
        replicas: ReplicaManager,
        producer_ids: ProducerIdManager,
        metrics=None,
        listener: str | None = None,
    ):
        self._cluster_id = cluster_id
        # The listener this servicer's server binds: Metadata gives every broker's address on it, so a
        # client inside a Docker network and one on the host each get addresses they can reach.
        self._listener = listener
        self._driver = driver
        self._state_machine = state_machine
        self._replicas = replicas
        self._producer_ids = producer_ids
        self.metrics = metrics

    @rpc("Produce")
    async def Produce(self, request, context):
        return await requests.produce(self._replicas, request)

    @rpc("Fetch")
    async def Fetch(self, request, context):
        return await requests.fetch(self._replicas, request)

    @rpc("ListOffsets")
    async def ListOffsets(self, request, context):
        return await requests.list_offsets(self._replicas, request)

    @rpc("InitProducerId")
    async def InitProducerId(self, request, context):
        return await self.init_producer_id()

    async def init_producer_id(self) -> broker_pb2.InitProducerIdResponse:
        return broker_pb2.InitProducerIdResponse(producer_id=await self._producer_ids.next_id(), producer_epoch=0)

    @rpc("Metadata")
    async def Metadata(self, request, context):
        return await self.metadata(request)

    async def metadata(self, request: broker_pb2.MetadataRequest) -> broker_pb2.MetadataResponse:
        """Metadata with every broker's address on this servicer's listener (gRPC and Kafka edges)."""
        await await_applied(self._driver, request.min_metadata_offset)
        image: MetadataImage = self._state_machine.image
        leader_id = self._driver.status().leader_id
        response = broker_pb2.MetadataResponse(
            cluster_id=self._cluster_id,
            controller_id=NO_NODE if leader_id is None else leader_id,
            metadata_offset=image.offset,
        )
        for broker in sorted(image.brokers.values(), key=lambda b: b.broker_id):
            host, port = broker.endpoint_for(self._listener)
            response.brokers.append(
                broker_pb2.BrokerEndpoint(
                    broker_id=broker.broker_id,
                    host=host,
                    port=port,
                    rack=broker.rack,
                    fenced=broker.fenced,
                )
            )
        names = list(request.topics) or sorted(image.topic_ids)
        live = {b.broker_id for b in image.brokers.values() if not b.fenced}
        for name in names:
            response.topics.append(_topic_metadata(image, name, live))
        return response


def _topic_metadata(image: MetadataImage, name: str, live: set[int]) -> broker_pb2.TopicMetadata:
    topic = image.topic(name)
    if topic is None:
        return broker_pb2.TopicMetadata(name=name, error_reason="UNKNOWN_TOPIC_OR_PARTITION")
    return broker_pb2.TopicMetadata(
        name=name,
        topic_id=topic.topic_id,
        partitions=[_partition_metadata(topic.partitions[i], live) for i in sorted(topic.partitions)],
    )


def _partition_metadata(partition: PartitionInfo, live: set[int]) -> broker_pb2.PartitionMetadata:
    return broker_pb2.PartitionMetadata(
        partition=partition.partition,
        leader=partition.leader,
        leader_epoch=partition.leader_epoch,
        partition_epoch=partition.partition_epoch,
        replicas=partition.replicas,
        isr=partition.isr,
        offline_replicas=[r for r in partition.replicas if r not in live],
        adding_replicas=partition.adding_replicas,
        removing_replicas=partition.removing_replicas,
    )


class ReplicationServicer(replication_pb2_grpc.ReplicationServiceServicer):
    def __init__(self, replicas: ReplicaManager, metrics=None, authenticator: PeerAuthenticator | None = None):
        self._replicas = replicas
        self.metrics = metrics
        self._authenticator = authenticator  # on mutual TLS: a fetch counts only from the replica it names

    @rpc("ReplicaFetch")
    async def ReplicaFetch(self, request, context):
        if self._authenticator is not None:
            self._authenticator.check_node(
                context, request.replica_id, f"a replica fetch for replica {request.replica_id}"
            )
        return await requests.replica_fetch(self._replicas, request)
