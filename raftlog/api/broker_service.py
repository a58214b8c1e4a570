"""BrokerService (public data plane) and ReplicationService (followers' fetches)."""

from __future__ import annotations

from raftlog.api.authorization import RequestAuthorizer, serve_authorized_partitions
from raftlog.api.pipelined import serve_pipelined
from raftlog.api.reads import await_applied
from raftlog.api.status import rpc
from raftlog.authorizer.acls import Operation, ResourceType
from raftlog.authorizer.authorizer import Caller
from raftlog.broker.producer_ids import ProducerIdManager
from raftlog.metadata.image import MetadataImage, PartitionInfo
from raftlog.node_ids import NO_NODE
from raftlog.replication import requests
from raftlog.replication.manager import ReplicaManager
from raftlog.tasks import yield_every
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
        authorizer: RequestAuthorizer,
        metrics=None,
        listener: str | None = None,
    ):
        self._cluster_id = cluster_id
        self._auth = authorizer
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
        return await self.produce(self._auth.caller(context), request)

    async def ProduceStream(self, request_iterator, context):
        """Produce requests pipelined on one call (api/pipelined.py), as the clients send them."""
        caller = self._auth.caller(context)
        async for answer in serve_pipelined(
            context,
            request_iterator,
            lambda r: self.produce(caller, r),
            broker_pb2.ProduceStreamResponse,
            self.metrics,
            "Produce",
        ):
            yield answer

    async def produce(self, caller: Caller, request: broker_pb2.ProduceRequest) -> broker_pb2.ProduceResponse:
        """Produce for the topics the caller may Write (the gRPC and Kafka edges both call it)."""
        return await serve_authorized_partitions(
            self._auth,
            caller,
            "Produce",
            request,
            lambda r: requests.produce(self._replicas, r),
            broker_pb2.ProduceResponse,
            broker_pb2.PartitionProduceResult,
        )

    @rpc("Fetch")
    async def Fetch(self, request, context):
        return await self.fetch(self._auth.caller(context), request)

    async def FetchStream(self, request_iterator, context):
        """Fetch requests pipelined on one call (api/pipelined.py), as the consumers send them."""
        caller = self._auth.caller(context)
        async for answer in serve_pipelined(
            context,
            request_iterator,
            lambda r: self.fetch(caller, r),
            broker_pb2.FetchStreamResponse,
            self.metrics,
            "Fetch",
        ):
            yield answer

    async def fetch(self, caller: Caller, request: broker_pb2.FetchRequest) -> broker_pb2.FetchResponse:
        return await serve_authorized_partitions(
            self._auth,
            caller,
            "Fetch",
            request,
            lambda r: requests.fetch(self._replicas, r),
            broker_pb2.FetchResponse,
            broker_pb2.FetchPartitionResult,
        )

    @rpc("ListOffsets")
    async def ListOffsets(self, request, context):
        return await self.list_offsets(self._auth.caller(context), request)

    async def list_offsets(self, caller: Caller, request: broker_pb2.ListOffsetsRequest):
        return await serve_authorized_partitions(
            self._auth,
            caller,
            "ListOffsets",
            request,
            lambda r: requests.list_offsets(self._replicas, r),
            broker_pb2.ListOffsetsResponse,
            broker_pb2.ListOffsetsResult,
        )

    @rpc("InitProducerId")
    async def InitProducerId(self, request, context):
        self._auth.check(self._auth.caller(context), "InitProducerId")
        return await self.init_producer_id()

    async def init_producer_id(self) -> broker_pb2.InitProducerIdResponse:
        return broker_pb2.InitProducerIdResponse(producer_id=await self._producer_ids.next_id(), producer_epoch=0)

    @rpc("Metadata")
    async def Metadata(self, request, context):
        return await self.metadata(self._auth.caller(context), request)

    async def metadata(self, caller: Caller, request: broker_pb2.MetadataRequest) -> broker_pb2.MetadataResponse:
        """Metadata with every broker's address on this servicer's listener (gRPC and Kafka edges).
        A listing leaves out the topics the caller may not Describe; a topic it names and may not
        Describe is answered TOPIC_AUTHORIZATION_FAILED (whether or not it exists, as Kafka)."""
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
        live = {b.broker_id for b in image.brokers.values() if not b.fenced}
        if not request.topics:
            for name in self._auth.visible(caller, Operation.DESCRIBE, ResourceType.TOPIC, sorted(image.topic_ids)):
                response.topics.append(await _topic_metadata(image, name, live))
            return response
        denied = self._auth.denied_topics(caller, "Metadata", request.topics)
        for name in request.topics:
            if name in denied:
                response.topics.append(broker_pb2.TopicMetadata(name=name, error_reason="TOPIC_AUTHORIZATION_FAILED"))
            else:
                response.topics.append(await _topic_metadata(image, name, live))
        return response


async def _topic_metadata(image: MetadataImage, name: str, live: set[int]) -> broker_pb2.TopicMetadata:
    """A topic of thousands of partitions is described a chunk at a time, the event loop getting a
    turn between chunks (heartbeats and Raft go on); a partition changed meanwhile is described as
    it is then, one deleted meanwhile is left out."""
    topic = image.topic(name)
    if topic is None:
        return broker_pb2.TopicMetadata(name=name, error_reason="UNKNOWN_TOPIC_OR_PARTITION")
    partitions = []
    for index, number in enumerate(sorted(topic.partitions)):
        await yield_every(index)
        partition = topic.partitions.get(number)
        if partition is not None:
            partitions.append(_partition_metadata(partition, live))
    return broker_pb2.TopicMetadata(name=name, topic_id=topic.topic_id, partitions=partitions)


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

    async def ReplicaFetchStream(self, request_iterator, context):
        """ReplicaFetch, one request and its answer at a time on one call: each counts, is
        authorized and fails as a ReplicaFetch call would (a failure ends the stream with its
        status; the follower opens another)."""
        # An async generator, as the listener's authentication wrapper expects of a streamed answer.
        async for request in request_iterator:
            yield await self.ReplicaFetch(request, context)
