"""GroupService: consumer groups over gRPC, a thin layer over the GroupCoordinator."""

from __future__ import annotations

from raftlog.api.authorization import RequestAuthorizer, peer_host
from raftlog.api.pipelined import serve_pipelined
from raftlog.api.status import rpc
from raftlog.authorizer.acls import CLUSTER_NAME, Operation, ResourceType
from raftlog.groups.coordinator import GroupCoordinator
from raftlog.v1 import group_pb2, group_pb2_grpc


class GroupServicer(group_pb2_grpc.GroupServiceServicer):
    def __init__(
        self, coordinator: GroupCoordinator, authorizer: RequestAuthorizer, metrics=None, listener: str | None = None
    ):
        self._coordinator = coordinator
        self._auth = authorizer
        self.metrics = metrics
        # The listener this servicer's server binds: the coordinator's address is given on it, as
        # Metadata gives brokers' (a client on the host cannot resolve an inter-broker hostname).
        self._listener = listener

    @rpc("FindCoordinator")
    async def FindCoordinator(self, request, context):
        self._auth.check(self._auth.caller(context), "FindCoordinator", group=request.group_id)
        return await self._coordinator.find_coordinator(request.group_id, self._listener)

    @rpc("ConsumerGroupHeartbeat")
    async def ConsumerGroupHeartbeat(self, request, context):
        return await self.heartbeat(self._auth.caller(context), request, peer_host(context))

    async def heartbeat(
        self, caller, request: group_pb2.ConsumerGroupHeartbeatRequest, client_host: str
    ) -> group_pb2.ConsumerGroupHeartbeatResponse:
        """Read on the group, and Describe on every topic a changed subscription names (the gRPC
        and Kafka edges); a regex subscription matches only the topics the caller may Describe
        (decided as the group resolves it, so ACL changes count from the next heartbeat)."""
        topics = request.subscribed_topic_names if request.subscription_changed else ()
        self._auth.check(caller, "ConsumerGroupHeartbeat", topics, request.group_id)
        auth = self._auth

        def describable(topic: str) -> bool:
            return bool(auth.visible(caller, Operation.DESCRIBE, ResourceType.TOPIC, (topic,)))

        return await self._coordinator.heartbeat(request, client_host, describable if auth.enabled else None)

    @rpc("OffsetCommit")
    async def OffsetCommit(self, request, context):
        return await self.commit(self._auth.caller(context), request)

    async def OffsetCommitStream(self, request_iterator, context):
        """Offset commits pipelined on one call (api/pipelined.py), as the clients send them."""
        caller = self._auth.caller(context)
        async for answer in serve_pipelined(
            context,
            request_iterator,
            lambda r: self.commit(caller, r),
            group_pb2.OffsetCommitStreamResponse,
            self.metrics,
            "OffsetCommit",
        ):
            yield answer

    async def commit(
        self, caller, request: group_pb2.OffsetCommitRequest, instance_id: str | None = None
    ) -> group_pb2.OffsetCommitResponse:
        """Read on the group, then per partition Read on its topic (the gRPC and Kafka edges);
        instance_id is a classic member's group.instance.id (GroupCoordinator.commit)."""
        self._auth.check(caller, "OffsetCommit", group=request.group_id)
        denied = self._auth.denied_topics(caller, "OffsetCommit", (o.topic for o in request.offsets))
        if not denied:
            return await self._coordinator.commit(request, instance_id)
        allowed = group_pb2.OffsetCommitRequest()
        allowed.CopyFrom(request)
        del allowed.offsets[:]
        allowed.offsets.extend(o for o in request.offsets if o.topic not in denied)
        answer = (
            await self._coordinator.commit(allowed, instance_id)
            if allowed.offsets
            else group_pb2.OffsetCommitResponse()
        )
        for o in request.offsets:
            if o.topic in denied:
                answer.results.append(
                    group_pb2.PartitionError(
                        topic=o.topic, partition=o.partition, error_reason="TOPIC_AUTHORIZATION_FAILED"
                    )
                )
        return answer

    @rpc("OffsetFetch")
    async def OffsetFetch(self, request, context):
        return await self.fetch_offsets(self._auth.caller(context), request)

    async def fetch_offsets(self, caller, request: group_pb2.OffsetFetchRequest) -> group_pb2.OffsetFetchResponse:
        """Describe on the group; the committed offsets of topics the caller may not Describe are left out."""
        self._auth.check(caller, "OffsetFetch", group=request.group_id)
        answer = await self._coordinator.fetch_offsets(request)
        if self._auth.enabled:
            visible = set(
                self._auth.visible(caller, Operation.DESCRIBE, ResourceType.TOPIC, {o.topic for o in answer.offsets})
            )
            kept = [o for o in answer.offsets if o.topic in visible]
            del answer.offsets[:]
            answer.offsets.extend(kept)
        return answer

    @rpc("ListGroups")
    async def ListGroups(self, request, context):
        return await self.list_groups(self._auth.caller(context))

    async def list_groups(self, caller) -> group_pb2.ListGroupsResponse:
        """Every group the caller may Describe (all of them with Describe on the cluster, as Kafka)."""
        answer = await self._coordinator.list_groups()
        if self._auth.enabled and not self._auth.visible(
            caller, Operation.DESCRIBE, ResourceType.CLUSTER, [CLUSTER_NAME]
        ):
            names = [g.group_id for g in answer.groups]
            visible = set(self._auth.visible(caller, Operation.DESCRIBE, ResourceType.GROUP, names))
            kept = [g for g in answer.groups if g.group_id in visible]
            del answer.groups[:]
            answer.groups.extend(kept)
        return answer

    @rpc("DescribeGroups")
    async def DescribeGroups(self, request, context):
        self._auth.check(self._auth.caller(context), "DescribeGroups", group=request.group_id)
        return await self._coordinator.describe(request.group_id)

    @rpc("DeleteGroups")
    async def DeleteGroups(self, request, context):
        self._auth.check(self._auth.caller(context), "DeleteGroups", group=request.group_id)
        await self._coordinator.delete_group(request.group_id)
        return group_pb2.DeleteGroupsResponse()

    @rpc("OffsetDelete")
    async def OffsetDelete(self, request, context):
        caller = self._auth.caller(context)
        self._auth.check(caller, "OffsetDelete", group=request.group_id)
        self._auth.check(caller, "OffsetDelete", topics=[p.topic for p in request.partitions])
        return await self._coordinator.delete_offsets(request)

    async def delete_offsets(self, caller, request: group_pb2.OffsetDeleteRequest) -> group_pb2.OffsetDeleteResponse:
        """The Kafka edge's OffsetDelete: Delete on the group (the whole request's error), then per
        partition Read on its topic (TOPIC_AUTHORIZATION_FAILED for those, the rest deleted), as Kafka."""
        self._auth.check(caller, "OffsetDelete", group=request.group_id)
        denied = self._auth.denied_topics(caller, "OffsetDelete", (p.topic for p in request.partitions))
        if not denied:
            return await self._coordinator.delete_offsets(request)
        allowed = group_pb2.OffsetDeleteRequest(
            group_id=request.group_id, partitions=[p for p in request.partitions if p.topic not in denied]
        )
        answer = (
            await self._coordinator.delete_offsets(allowed) if allowed.partitions else group_pb2.OffsetDeleteResponse()
        )
        for topic in request.partitions:
            if topic.topic in denied:
                answer.results.extend(
                    group_pb2.PartitionError(topic=topic.topic, partition=p, error_reason="TOPIC_AUTHORIZATION_FAILED")
                    for p in topic.partitions
                )
        return answer
