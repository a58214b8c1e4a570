"""ControllerService: broker registration and heartbeats, answered by the active controller only.

On a mutual-TLS listener every request must come from the broker it names (``broker_id``), else
CLUSTER_AUTHORIZATION_FAILED: a node's certificate cannot register, heartbeat, shrink an ISR or
take producer ids for another broker."""

from __future__ import annotations

from raftlog.api.status import rpc
from raftlog.controller.active import ActiveController
from raftlog.controller.partitions import AlterPartitionRequest
from raftlog.errors import RaftlogError
from raftlog.tls import PeerAuthenticator
from raftlog.v1 import controller_pb2, controller_pb2_grpc


class ControllerServicer(controller_pb2_grpc.ControllerServiceServicer):
    def __init__(
        self,
        cluster_id: str,
        controller: ActiveController,
        metrics=None,
        authenticator: PeerAuthenticator | None = None,
    ):
        self._cluster_id = cluster_id
        self._controller = controller
        self.metrics = metrics
        self._authenticator = authenticator  # on mutual TLS: the caller must be the broker it names

    def _check(self, request, context, api: str) -> None:
        self._check_cluster(request.cluster_id)
        if self._authenticator is not None:
            self._authenticator.check_node(context, request.broker_id, f"{api} for broker {request.broker_id}")

    def _check_cluster(self, cluster_id: str) -> None:
        if cluster_id != self._cluster_id:
            raise RaftlogError(
                "INCONSISTENT_CLUSTER_ID", f"request for cluster {cluster_id!r}, this is cluster {self._cluster_id!r}"
            )

    @rpc("RegisterBroker")
    async def RegisterBroker(self, request, context):
        self._check(request, context, "RegisterBroker")
        epoch = await self._controller.register_broker(request)
        return controller_pb2.RegisterBrokerResponse(broker_epoch=epoch)

    @rpc("BrokerHeartbeat")
    async def BrokerHeartbeat(self, request, context):
        self._check(request, context, "BrokerHeartbeat")
        answer = await self._controller.broker_heartbeat(request)
        return controller_pb2.BrokerHeartbeatResponse(
            is_fenced=answer.fenced,
            controller_time_ms=answer.controller_time_ms,
            controller_clock_trusted=answer.controller_clock_trusted,
        )

    @rpc("AlterPartition")
    async def AlterPartition(self, request, context):
        self._check(request, context, "AlterPartition")
        change = AlterPartitionRequest(
            broker_id=request.broker_id,
            leader_epoch=request.leader_epoch,
            partition_epoch=request.partition_epoch,
            new_isr=tuple(request.new_isr),
        )
        partition = await self._controller.alter_partition(
            request.topic_id, request.partition, change, request.broker_epoch
        )
        return controller_pb2.AlterPartitionResponse(
            leader=partition.leader,
            leader_epoch=partition.leader_epoch,
            partition_epoch=partition.partition_epoch,
            isr=partition.isr,
        )

    @rpc("AllocateProducerIds")
    async def AllocateProducerIds(self, request, context):
        self._check(request, context, "AllocateProducerIds")
        first, count = await self._controller.allocate_producer_ids(request.broker_id, request.broker_epoch)
        return controller_pb2.AllocateProducerIdsResponse(first_producer_id=first, count=count)
