"""ControllerService: broker registration and heartbeats, answered by the active controller only."""

from __future__ import annotations

from raftlog.api.status import rpc
from raftlog.controller.active import ActiveController
from raftlog.errors import RaftlogError
from raftlog.v1 import controller_pb2, controller_pb2_grpc


class ControllerServicer(controller_pb2_grpc.ControllerServiceServicer):
    def __init__(self, cluster_id: str, controller: ActiveController, metrics=None):
        self._cluster_id = cluster_id
        self._controller = controller
        self.metrics = metrics

    def _check_cluster(self, cluster_id: str) -> None:
        if cluster_id != self._cluster_id:
            raise RaftlogError(
                "INCONSISTENT_CLUSTER_ID", f"request for cluster {cluster_id!r}, this is cluster {self._cluster_id!r}"
            )

    @rpc("RegisterBroker")
    async def RegisterBroker(self, request, context):
        self._check_cluster(request.cluster_id)
        epoch = await self._controller.register_broker(request)
        return controller_pb2.RegisterBrokerResponse(broker_epoch=epoch)

    @rpc("BrokerHeartbeat")
    async def BrokerHeartbeat(self, request, context):
        self._check_cluster(request.cluster_id)
        fenced = await self._controller.broker_heartbeat(request)
        return controller_pb2.BrokerHeartbeatResponse(is_fenced=fenced)
