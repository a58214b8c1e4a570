"""GroupService: consumer groups over gRPC, a thin layer over the GroupCoordinator."""

from __future__ import annotations

from raftlog.api.status import rpc
from raftlog.groups.coordinator import GroupCoordinator
from raftlog.v1 import group_pb2, group_pb2_grpc


def _peer_host(context) -> str:
    peer = context.peer() or ""  # "ipv4:127.0.0.1:5555"
    parts = peer.split(":")
    return parts[1] if len(parts) >= 3 else peer


class GroupServicer(group_pb2_grpc.GroupServiceServicer):
    def __init__(self, coordinator: GroupCoordinator, metrics=None, listener: str | None = None):
        self._coordinator = coordinator
        self.metrics = metrics
        # The listener this servicer's server binds: the coordinator's address is given on it, as
        # Metadata gives brokers' (a client on the host cannot resolve an inter-broker hostname).
        self._listener = listener

    @rpc("FindCoordinator")
    async def FindCoordinator(self, request, context):
        return await self._coordinator.find_coordinator(request.group_id, self._listener)

    @rpc("ConsumerGroupHeartbeat")
    async def ConsumerGroupHeartbeat(self, request, context):
        return await self._coordinator.heartbeat(request, _peer_host(context))

    @rpc("OffsetCommit")
    async def OffsetCommit(self, request, context):
        return await self._coordinator.commit(request)

    @rpc("OffsetFetch")
    async def OffsetFetch(self, request, context):
        return await self._coordinator.fetch_offsets(request)

    @rpc("ListGroups")
    async def ListGroups(self, request, context):
        return await self._coordinator.list_groups()

    @rpc("DescribeGroups")
    async def DescribeGroups(self, request, context):
        return await self._coordinator.describe(request.group_id)

    @rpc("DeleteGroups")
    async def DeleteGroups(self, request, context):
        await self._coordinator.delete_group(request.group_id)
        return group_pb2.DeleteGroupsResponse()

    @rpc("OffsetDelete")
    async def OffsetDelete(self, request, context):
        return await self._coordinator.delete_offsets(request)
