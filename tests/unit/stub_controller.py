"""In-process ControllerService stubs for the broker side of the controller protocol."""

from __future__ import annotations

import grpc

from raftlog.api.status import abort
from raftlog.errors import RaftlogError
from raftlog.v1 import controller_pb2, controller_pb2_grpc


class StubController(controller_pb2_grpc.ControllerServiceServicer):
    """Answers AllocateProducerIds and BrokerHeartbeat, or NOT_CONTROLLER when told it is not the
    controller; records each call's remaining deadline."""

    def __init__(self, node_id: int, active: bool = True, leader_hint: int | None = None):
        self.node_id = node_id
        self.active = active
        self.leader_hint = leader_hint
        self.error: RaftlogError | None = None  # answered to every call when set
        self.deadlines_s: list[float] = []  # time remaining of each call as it arrived
        self.calls: list[str] = []
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> str:
        self._server = grpc.aio.server()
        controller_pb2_grpc.add_ControllerServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server:
            await self._server.stop(None)

    async def _answer(self, name: str, context) -> None:
        self.calls.append(name)
        self.deadlines_s.append(context.time_remaining())
        if self.error is not None:
            await abort(context, self.error)
        if not self.active:
            await abort(
                context, RaftlogError("NOT_CONTROLLER", f"node {self.node_id} is not the controller", self.leader_hint)
            )

    async def AllocateProducerIds(self, request, context):
        await self._answer("AllocateProducerIds", context)
        return controller_pb2.AllocateProducerIdsResponse(first_producer_id=1000, count=10)

    async def BrokerHeartbeat(self, request, context):
        await self._answer("BrokerHeartbeat", context)
        return controller_pb2.BrokerHeartbeatResponse(is_fenced=False)
