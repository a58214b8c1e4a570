"""ReplicaFetcher: the partitions of one fetch answer are applied side by side."""

import asyncio
from types import SimpleNamespace

from raftlog.metadata.image import PartitionInfo
from raftlog.replication import fetcher as fetcher_module
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import replication_pb2
from tests.unit.fake_replica_log import FakeReplicaLog


class SlowSyncLog(FakeReplicaLog):
    """A log whose follower append takes a few loop turns (its fsync), counting how many of
    these logs are appending at once."""

    appending = 0
    most_at_once = 0

    async def append_as_follower(self, records: bytes, on_written=None):
        SlowSyncLog.appending += 1
        SlowSyncLog.most_at_once = max(SlowSyncLog.most_at_once, SlowSyncLog.appending)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            return await super().append_as_follower(records, on_written)
        finally:
            SlowSyncLog.appending -= 1


def _follower(topic: str) -> Partition:
    partition = Partition(topic, topic.encode().ljust(16, b"_"), 0, 2, SlowSyncLog(), ChangeNotifier())
    partition.apply_metadata(PartitionInfo(partition.topic_id, 0, (1, 2), (1, 2), 1, 0, 0))
    partition.become_follower()
    return partition


def _fetching_from_broker_1(partitions: list[Partition]):
    """A fetcher following the partitions from broker 1, and the (sent, asked) of a fetch of all of them."""
    manager = SimpleNamespace(supervisor=TaskSupervisor())
    fetcher = fetcher_module.ReplicaFetcher(manager, 1, SimpleNamespace(channel=lambda broker_id: None))
    for p in partitions:
        fetcher.add(p)
    sent = {(p.topic_id, p.index): p for p in partitions}
    asked = {key: (p.leader_epoch, p.log.log_end_offset) for key, p in sent.items()}
    return fetcher, sent, asked


def test_one_answer_for_many_partitions_waits_for_their_fsyncs_together_not_one_after_another():
    partitions = [_follower(f"t{i}") for i in range(4)]
    fetcher, sent, asked = _fetching_from_broker_1(partitions)
    response = replication_pb2.ReplicaFetchResponse(
        results=[
            replication_pb2.ReplicaFetchResult(topic_id=p.topic_id, partition=0, high_watermark=1, records=b"0|0|x")
            for p in partitions
        ]
    )
    asyncio.run(fetcher._handle(response, sent, asked))
    assert [p.log.log_end_offset for p in partitions] == [1, 1, 1, 1]  # every one applied
    assert [p.high_watermark for p in partitions] == [1, 1, 1, 1]
    assert SlowSyncLog.most_at_once == 4  # one after another, it was 1


class YieldingLog(FakeReplicaLog):
    """A log whose following of the leader's log start yields, running `meanwhile` (what the
    event loop could do in that turn: apply a metadata update)."""

    def __init__(self, meanwhile):
        super().__init__()
        self.meanwhile = meanwhile

    async def follow_log_start(self, offset: int) -> None:
        await asyncio.sleep(0)
        self.meanwhile()


def test_a_partition_that_became_leader_while_the_answer_was_applied_takes_none_of_it():
    """Partition "b"'s records wait for the answers applied before them; meanwhile a metadata
    update makes this broker b's leader. b's records from the old leader are dropped (its log
    end now starts a new epoch of its own), not appended to the new leader's log."""
    b = Partition("b", b"b".ljust(16, b"_"), 0, 2, FakeReplicaLog(), ChangeNotifier())
    b.apply_metadata(PartitionInfo(b.topic_id, 0, (1, 2), (1, 2), 1, 0, 0))
    b.become_follower()

    def b_becomes_leader():
        b.apply_metadata(PartitionInfo(b.topic_id, 0, (1, 2), (1, 2), 2, 1, 1))
        b.become_leader()

    c = Partition("c", b"c".ljust(16, b"_"), 0, 2, YieldingLog(b_becomes_leader), ChangeNotifier())
    c.apply_metadata(PartitionInfo(c.topic_id, 0, (1, 2), (1, 2), 1, 0, 0))
    c.become_follower()
    manager = SimpleNamespace(supervisor=TaskSupervisor())
    fetcher = fetcher_module.ReplicaFetcher(manager, 1, SimpleNamespace(channel=lambda broker_id: None))
    fetcher.add(b)
    fetcher.add(c)
    sent = {(p.topic_id, p.index): p for p in (b, c)}
    asked = {key: (p.leader_epoch, p.log.log_end_offset) for key, p in sent.items()}
    response = replication_pb2.ReplicaFetchResponse(
        results=[
            replication_pb2.ReplicaFetchResult(topic_id=b.topic_id, partition=0, high_watermark=1, records=b"0|0|x"),
            replication_pb2.ReplicaFetchResult(topic_id=c.topic_id, partition=0, log_start_offset=5),
        ]
    )
    asyncio.run(fetcher._handle(response, sent, asked))
    assert b.is_leader and b.log.log_end_offset == 0


def test_an_answer_for_thousands_of_partitions_leaves_the_loop_turns_meanwhile():
    """An idle fetch's answer names every new partition of a big topic (each only its high
    watermark); applying it must not hold the event loop: requests, heartbeats and Raft on the
    same loop go on between partitions."""
    partitions = [
        Partition(f"t{i}", f"t{i}".encode().ljust(16, b"_"), 0, 2, FakeReplicaLog(), ChangeNotifier())
        for i in range(2_000)
    ]
    for p in partitions:
        p.apply_metadata(PartitionInfo(p.topic_id, 0, (1, 2), (1, 2), 1, 0, 0))
        p.become_follower()
    fetcher, sent, asked = _fetching_from_broker_1(partitions)
    response = replication_pb2.ReplicaFetchResponse(
        results=[
            replication_pb2.ReplicaFetchResult(topic_id=p.topic_id, partition=0, high_watermark=0) for p in partitions
        ]
    )

    async def apply_while_ticking() -> int:
        ticks = 0
        applying = asyncio.ensure_future(fetcher._handle(response, sent, asked))
        while not applying.done():
            ticks += 1
            await asyncio.sleep(0)
        await applying
        return ticks

    ticks = asyncio.run(apply_while_ticking())
    assert ticks >= 2_000 // 100 - 1, f"the loop turned {ticks} times while 2,000 partitions were applied"
