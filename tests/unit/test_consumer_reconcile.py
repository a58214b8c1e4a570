"""A group consumer giving partitions up keeps consuming the ones it keeps (as Kafka's does): the
revoked partitions' commit runs beside the fetching, and on_revoke and the release come once it
is done. Against an in-process broker and a scripted coordinator."""

from __future__ import annotations

import asyncio

import grpc

from raftlog.client import AsyncConsumer, TopicPartition
from raftlog.client.records import encode_batch
from raftlog.log.record_batch import set_base_offset
from raftlog.v1 import broker_pb2_grpc, group_pb2, group_pb2_grpc
from tests.unit.stub_broker import BROKER_ID, StubBroker

HANG_GUARD_S = 20.0  # only so that a hang fails the test instead of blocking the run


class ScriptedCoordinator(group_pb2_grpc.GroupServiceServicer):
    """Gives the member `assignment`; commits wait while `commits_open` is cleared."""

    def __init__(self, broker: StubBroker):
        self.broker = broker
        self.assignment = [0, 1]
        self.owned_seen: list[frozenset[int]] = []  # the owned partitions of each heartbeat
        self.commits_open = asyncio.Event()
        self.commits_open.set()
        self.commits: list[dict[int, int]] = []
        self.commits_received = 0

    async def FindCoordinator(self, request, context):
        return group_pb2.FindCoordinatorResponse(node_id=BROKER_ID, host="127.0.0.1", port=self.broker.port)

    async def ConsumerGroupHeartbeat(self, request, context):
        self.owned_seen.append(frozenset(p for tp in request.owned_partitions for p in tp.partitions))
        return group_pb2.ConsumerGroupHeartbeatResponse(
            member_id=request.member_id,
            member_epoch=1,
            heartbeat_interval_ms=50,
            assignment=[group_pb2.TopicPartitions(topic="t", partitions=self.assignment)],
        )

    async def OffsetCommit(self, request, context):
        self.commits_received += 1
        await self.commits_open.wait()
        self.commits.append({o.partition: o.offset for o in request.offsets})
        return group_pb2.OffsetCommitResponse(
            results=[group_pb2.PartitionError(topic=o.topic, partition=o.partition) for o in request.offsets]
        )

    async def OffsetFetch(self, request, context):
        return group_pb2.OffsetFetchResponse(
            offsets=[
                group_pb2.CommittedOffset(topic=tp.topic, partition=p, offset=0, leader_epoch=-1)
                for tp in request.partitions
                for p in tp.partitions
            ]
        )


class BrokerWithGroups(StubBroker):
    def __init__(self, topics):
        super().__init__(topics)
        self.coordinator = ScriptedCoordinator(self)

    async def start(self) -> str:
        self._server = grpc.aio.server()
        broker_pb2_grpc.add_BrokerServiceServicer_to_server(self, self._server)
        group_pb2_grpc.add_GroupServiceServicer_to_server(self.coordinator, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self.address

    def append(self, partition: int, count: int) -> None:
        key = ("t", partition)
        batch = bytearray(encode_batch([(None, b"v", None, 0) for _ in range(count)], None, -1, -1, -1))
        set_base_offset(batch, 0, self._log_end[key])
        self._log_end[key] += count
        self.stored[key].append(bytes(batch))


async def poll_until(consumer: AsyncConsumer, done, polls: int = 200) -> list:
    got = []
    for _ in range(polls):
        got += await asyncio.wait_for(consumer.poll(50), HANG_GUARD_S)
        if done(got):
            return got
    raise AssertionError(f"not done after {polls} polls: {len(got)} records")


def test_kept_partitions_are_consumed_while_the_revoked_ones_commit():
    async def scenario():
        broker = BrokerWithGroups({"t": 2})
        await broker.start()
        coordinator = broker.coordinator
        revoked: list[set] = []
        consumer = AsyncConsumer(broker.address, group_id="g", auto_commit_interval_ms=60_000)
        try:
            broker.append(0, 5)
            broker.append(1, 5)
            consumer.subscribe(["t"], on_revoke=lambda tps: revoked.append(tps))
            first = await poll_until(consumer, lambda got: len(got) == 10)
            assert {r.partition for r in first} == {0, 1}

            # Partition 1 moves away; its commit (auto-commit on revocation) hangs.
            coordinator.commits_open.clear()
            coordinator.assignment = [0]
            await poll_until(consumer, lambda got: TopicPartition("t", 1) not in consumer.assignment())
            heartbeats = len(coordinator.owned_seen)
            broker.append(0, 7)
            later = await poll_until(
                consumer, lambda got: len(got) == 7 and len(coordinator.owned_seen) > heartbeats + 1
            )
            assert {r.partition for r in later} == {0}  # the kept partition is consumed throughout
            assert revoked == []  # not given up before its offsets are committed
            assert all(1 in owned for owned in coordinator.owned_seen[heartbeats:])  # nor told it is free

            coordinator.commits_open.set()
            await poll_until(consumer, lambda got: bool(revoked) and 1 not in coordinator.owned_seen[-1])
            assert revoked == [{TopicPartition("t", 1)}]
            assert {1: 5} in coordinator.commits  # what poll() returned of partition 1, committed
            assert consumer.assignment() == {TopicPartition("t", 0)}
        finally:
            coordinator.commits_open.set()
            await consumer.close()
            await broker.stop()

    asyncio.run(scenario())


class BrokerWithGatedFetches(BrokerWithGroups):
    """Fetches wait while `fetches_open` is cleared (a long poll that has not returned yet)."""

    def __init__(self, topics):
        super().__init__(topics)
        self.fetches_open = asyncio.Event()
        self.fetches_open.set()
        self.fetches = 0

    async def Fetch(self, request, context):
        self.fetches += 1
        await self.fetches_open.wait()
        return await super().Fetch(request, context)


async def wait_for(condition, what: str) -> None:
    for _ in range(int(HANG_GUARD_S / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not {what} within {HANG_GUARD_S}s")


def test_a_hand_over_does_not_wait_for_the_fetch_in_flight():
    async def scenario():
        broker = BrokerWithGatedFetches({"t": 2})
        await broker.start()
        coordinator = broker.coordinator
        revoked: list[set] = []
        consumer = AsyncConsumer(broker.address, group_id="g", auto_commit_interval_ms=60_000)
        polling = None
        try:
            broker.append(0, 5)
            broker.append(1, 5)
            consumer.subscribe(["t"], on_revoke=lambda tps: revoked.append(tps))
            await poll_until(consumer, lambda got: len(got) == 10)

            broker.fetches_open.clear()  # the next fetch stays out until the end of the test
            fetches = broker.fetches
            polling = asyncio.ensure_future(consumer.poll(int(HANG_GUARD_S * 1000)))
            await wait_for(lambda: broker.fetches > fetches, "fetching")
            coordinator.assignment = [0]  # partition 1 moves away while that fetch is out
            await wait_for(lambda: bool(revoked) and 1 not in coordinator.owned_seen[-1], "released")
            assert revoked == [{TopicPartition("t", 1)}]
            assert {1: 5} in coordinator.commits  # committed before it was released
            assert not polling.done()  # all of it within the one poll, its fetch still out,
            assert broker.fetches == fetches + 1  # and that fetch (of partition 0 too) not restarted
            assert consumer.assignment() == {TopicPartition("t", 0)}
        finally:
            broker.fetches_open.set()
            if polling is not None:
                polling.cancel()  # it would wait out its timeout: nothing new to fetch
                await asyncio.gather(polling, return_exceptions=True)
            await consumer.close()
            await broker.stop()

    asyncio.run(scenario())


def test_a_revocation_covered_by_the_auto_commit_in_flight_is_not_committed_twice():
    async def scenario():
        broker = BrokerWithGroups({"t": 2})
        await broker.start()
        coordinator = broker.coordinator
        revoked: list[set] = []
        consumer = AsyncConsumer(broker.address, group_id="g", auto_commit_interval_ms=1)
        try:
            broker.append(0, 5)
            broker.append(1, 5)
            consumer.subscribe(["t"], on_revoke=lambda tps: revoked.append(tps))
            await poll_until(consumer, lambda got: len(got) == 10)
            coordinator.commits_open.clear()  # the next auto-commit (of both, at 5) hangs
            await poll_until(consumer, lambda got: coordinator.commits_received > len(coordinator.commits))
            before = len(coordinator.commits)
            coordinator.assignment = [0]
            await poll_until(consumer, lambda got: TopicPartition("t", 1) not in consumer.assignment())
            assert revoked == []  # not released while that commit is out
            coordinator.commits_open.set()
            await poll_until(consumer, lambda got: bool(revoked))
            assert revoked == [{TopicPartition("t", 1)}]
            # What the auto-commit carried for partition 1 is what was consumed: it is committed
            # once, by that auto-commit, and released after it landed.
            assert [c for c in coordinator.commits[before:] if 1 in c] == [{0: 5, 1: 5}]
        finally:
            coordinator.commits_open.set()
            await consumer.close()
            await broker.stop()

    asyncio.run(scenario())
