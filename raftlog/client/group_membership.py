"""A consumer's side of its group (KIP-848): finding the coordinator, heartbeats, commits.

``GroupMembership`` runs the heartbeat loop on the consumer's event loop and keeps the latest
assignment the coordinator gave; the consumer reconciles it in ``poll`` (revoke first, tell the
coordinator at once, then take new partitions), so user callbacks run on the consumer's thread.
It never decides what the consumer owns by itself, except when the coordinator says the member
is fenced or unknown: then everything it owned is lost and it joins again with epoch 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable

import grpc

from raftlog.channels import error_from_rpc
from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.client.pipelined import OFFSET_COMMIT
from raftlog.errors import Errors, RaftlogError, Scope
from raftlog.v1 import group_pb2, group_pb2_grpc

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = 0.1
CALL_TIMEOUT_S = 10.0
COMMIT_TIMEOUT_S = 30.0
FAST_HEARTBEAT_S = 0.1  # after a change, heartbeat this often for a while: hand-overs finish sooner
FAST_HEARTBEAT_WINDOW_S = 3.0
TopicPartitionKey = tuple[str, int]
PIPELINED = {OFFSET_COMMIT.unary: OFFSET_COMMIT}  # sent on a pipelined stream (client/pipelined.py)


def _to_pb(tps: Iterable[TopicPartitionKey]) -> list[group_pb2.TopicPartitions]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(tps):
        by_topic.setdefault(topic, []).append(partition)
    return [group_pb2.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def _from_pb(items) -> frozenset[TopicPartitionKey]:
    return frozenset((tp.topic, p) for tp in items for p in tp.partitions)


def _coordinator_moved(error: RaftlogError) -> bool:
    """Find the coordinator again and retry: it moved, is loading, or could not be reached."""
    return error.retriable and error.error.scope is Scope.CALL


class GroupMembership:
    def __init__(
        self,
        metadata: ClusterMetadata,
        group_id: str,
        instance_id: str | None,
        client_id: str,
        rebalance_timeout_ms: int,
        assignor: str | None,
    ):
        self.metadata = metadata
        self.group_id = group_id
        self.instance_id = instance_id
        self.client_id = client_id
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.assignor = assignor
        # Chosen by the client and kept for the consumer's life (KIP-1082), so a join whose answer
        # was lost, or a rejoin after a fencing, is recognised as this member and not as a second
        # process holding the same group.instance.id (UNRELEASED_INSTANCE_ID).
        self.member_id = uuid.uuid4().hex
        self.member_epoch = 0
        self.heartbeat_interval_s = 0.5
        self.topics: list[str] = []
        self.pattern: str | None = None
        self.subscription_sent = False
        self.owned: frozenset[TopicPartitionKey] = frozenset()  # what the consumer owns now (reconciled)
        self.assignment: frozenset[TopicPartitionKey] | None = None  # the coordinator's latest answer
        self.lost = False  # fenced: the consumer must drop everything (on_lost) and join again
        self.error: RaftlogError | None = None  # a fatal error (bad pattern...) for the next poll
        self._coordinator: str | None = None
        self._stubs: dict[str, group_pb2_grpc.GroupServiceStub] = {}
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        # Set when the consumer has something to reconcile (a new assignment, lost, a fatal
        # error): its poll wakes at once instead of at the end of the fetch it is waiting on.
        self.changed = asyncio.Event()
        self._fast_until = 0.0
        self._lock = asyncio.Lock()  # one heartbeat in flight at a time

    # -- the coordinator ----------------------------------------------------------------------

    async def _find_coordinator(self) -> str:
        if self._coordinator is None:
            stub = group_pb2_grpc.GroupServiceStub(self.metadata.channel(self.metadata.any_broker()))
            try:
                found = await stub.FindCoordinator(
                    group_pb2.FindCoordinatorRequest(group_id=self.group_id), timeout=CALL_TIMEOUT_S
                )
            except grpc.RpcError as exc:
                self.metadata.invalidate()
                await self.metadata.refresh(force=True)
                raise error_from_rpc(exc) from None
            self._coordinator = f"{found.host}:{found.port}"
        return self._coordinator

    async def call(self, method: str, request, timeout_s: float = 30.0):
        """A call to the group's coordinator, finding it again while it moves or loads."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                address = await self._find_coordinator()
                pipelined = PIPELINED.get(method)
                if pipelined is not None:
                    return await self.metadata.pipelined(address, pipelined).request(request, CALL_TIMEOUT_S)
                stub = self._stubs.get(address)
                if stub is None:  # built once per address: a stub is 15 method objects
                    stub = self._stubs[address] = group_pb2_grpc.GroupServiceStub(self.metadata.channel(address))
                return await getattr(stub, method)(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                error = error_from_rpc(exc)
            except RaftlogError as exc:
                error = exc
            if not _coordinator_moved(error) or time.monotonic() > deadline:
                raise error
            self._coordinator = None
            await asyncio.sleep(RETRY_BACKOFF_S)

    # -- subscription and heartbeats ----------------------------------------------------------

    def subscribe(self, topics: list[str], pattern: str | None) -> None:
        self.topics, self.pattern = topics, pattern
        self.subscription_sent = False
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._heartbeat_loop(), name="group-heartbeat")
        self.wake()

    def wake(self) -> None:
        """Heartbeat now (a revocation done, a subscription changed)."""
        self._fast_until = time.monotonic() + FAST_HEARTBEAT_WINDOW_S
        self._wake.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            try:
                await self.heartbeat()
            except RaftlogError as exc:
                if exc.error in (Errors.UNKNOWN_MEMBER_ID, Errors.FENCED_MEMBER_EPOCH):
                    log.info(
                        "group %s: member %s fenced (%s); joining again", self.group_id, self.member_id, exc.reason
                    )
                    self.lost = True
                    self.member_epoch, self.subscription_sent = 0, False
                    self.assignment = None
                    self.changed.set()
                    continue
                if not exc.retriable:
                    # Fatal (FENCED_INSTANCE_ID, UNRELEASED_INSTANCE_ID, a bad pattern...): the
                    # member is out of the group; the next poll drops its partitions and raises.
                    log.error("group %s: member %s: %s", self.group_id, self.member_id, exc)
                    self.error = exc
                    self.member_epoch, self.assignment = 0, None
                    self.changed.set()
                    return
                self._coordinator = None
                await asyncio.sleep(RETRY_BACKOFF_S)
                continue
            fast = time.monotonic() < self._fast_until
            try:
                await asyncio.wait_for(self._wake.wait(), FAST_HEARTBEAT_S if fast else self.heartbeat_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def heartbeat(self) -> None:
        async with self._lock:
            if self.lost:
                return  # the consumer has not dropped its partitions yet (next poll does)
            request = group_pb2.ConsumerGroupHeartbeatRequest(
                group_id=self.group_id,
                member_id=self.member_id,
                member_epoch=self.member_epoch,
                instance_id=self.instance_id or "",
                rebalance_timeout_ms=self.rebalance_timeout_ms,
                client_id=self.client_id,
                server_assignor=self.assignor or "",
                owned_sent=True,
                owned_partitions=_to_pb(self.owned),
            )
            if not self.subscription_sent or self.member_epoch == 0:
                request.subscription_changed = True
                request.subscribed_topic_names.extend(self.topics)
                request.subscribed_regex = self.pattern or ""
            response = await self.call("ConsumerGroupHeartbeat", request, timeout_s=CALL_TIMEOUT_S)
            self.subscription_sent = True
            changed = response.member_epoch != self.member_epoch
            self.member_id, self.member_epoch = response.member_id, response.member_epoch
            if response.heartbeat_interval_ms > 0:
                self.heartbeat_interval_s = response.heartbeat_interval_ms / 1000.0
            assignment = _from_pb(response.assignment)
            if assignment != self.assignment or changed:
                self._fast_until = time.monotonic() + FAST_HEARTBEAT_WINDOW_S
                log.info(
                    "group %s: member %s at epoch %d is given %d partitions (owns %d)",
                    self.group_id,
                    self.member_id,
                    self.member_epoch,
                    len(assignment),
                    len(self.owned),
                )
                self.assignment = assignment
                self.changed.set()

    def lost_handled(self) -> None:
        self.owned = frozenset()
        self.lost = False
        self.wake()

    async def leave(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.member_epoch <= 0:
            return  # never joined, or already out of the group (its session runs out on its own)
        epoch = -2 if self.instance_id else -1
        request = group_pb2.ConsumerGroupHeartbeatRequest(
            group_id=self.group_id, member_id=self.member_id, member_epoch=epoch, instance_id=self.instance_id or ""
        )
        try:
            await self.call("ConsumerGroupHeartbeat", request, timeout_s=3.0)
        except RaftlogError as exc:  # the session runs out on its own
            log.info("group %s: leaving failed (%s); the session timeout will remove the member", self.group_id, exc)
        self.member_epoch = 0

    # -- offsets ------------------------------------------------------------------------------

    async def commit(self, offsets: dict[TopicPartitionKey, int], in_group: bool) -> None:
        """Commits offsets (fenced by member epoch when in the group). A STALE_MEMBER_EPOCH is
        retried after a heartbeat brings the member's epoch up to date; a retriable error
        (NOT_ENOUGH_REPLICAS while the offsets partition's ISR recovers) until the deadline, as
        Kafka's commitSync does."""
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        attempt = 0
        while True:
            attempt += 1
            request = group_pb2.OffsetCommitRequest(
                group_id=self.group_id,
                member_id=self.member_id if in_group else "",
                member_epoch=self.member_epoch if in_group else -1,
                offsets=[
                    group_pb2.OffsetCommitPartition(topic=t, partition=p, offset=o, leader_epoch=-1)
                    for (t, p), o in sorted(offsets.items())
                ],
            )
            try:
                response = await self.call("OffsetCommit", request, timeout_s=max(0.1, deadline - time.monotonic()))
            except RaftlogError as exc:
                if exc.error is Errors.STALE_MEMBER_EPOCH and attempt < 3:
                    await self.heartbeat()
                    continue
                if exc.retriable and time.monotonic() < deadline:
                    await asyncio.sleep(RETRY_BACKOFF_S)
                    continue
                raise
            for result in response.results:
                if result.error_reason:
                    raise RaftlogError.from_reason(result.error_reason, result.error_message)
            return

    async def committed(self, tps: list[TopicPartitionKey]) -> dict[TopicPartitionKey, int | None]:
        request = group_pb2.OffsetFetchRequest(group_id=self.group_id, partitions=_to_pb(tps))
        response = await self.call("OffsetFetch", request)
        found = {(o.topic, o.partition): (o.offset if o.offset >= 0 else None) for o in response.offsets}
        return {tp: found.get(tp) for tp in tps}
