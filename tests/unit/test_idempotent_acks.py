"""Idempotent producer state on the leader: a retried batch is answered like its original append
(never before acks allows), and sequences survive truncation."""

import asyncio

import pytest

from raftlog.errors import RaftlogError
from raftlog.log import LogConfig
from raftlog.log.record_batch import encode_batch
from raftlog.metadata.image import PartitionInfo
from raftlog.replication.log_adapter import PartitionReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition

TOPIC_ID = b"T" * 16


def leader_of_replicas_1_and_2(tmp_path) -> Partition:
    """Broker 1's replica of t-0, leading in epoch 0 with broker 2 in the ISR (not fetching)."""
    leader = Partition(
        "t", TOPIC_ID, 0, 1, PartitionReplicaLog(tmp_path / "t-0", LogConfig()), ChangeNotifier(), clock_ms=lambda: 0.0
    )
    leader.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 1, 0, 0))
    leader.become_leader()
    return leader


def test_a_retried_duplicate_is_acknowledged_only_once_the_isr_has_it(tmp_path):
    async def scenario():
        leader = leader_of_replicas_1_and_2(tmp_path)
        batch = encode_batch([(b"k", b"v", None, 0)], producer_id=7, producer_epoch=0, base_sequence=0)
        for attempt in ("original", "retry"):  # the follower is not fetching: neither may succeed
            with pytest.raises(RaftlogError) as failure:
                await leader.append_as_leader(batch, acks=-1, timeout_ms=50, min_isr=2)
            assert failure.value.reason == "REQUEST_TIMED_OUT", attempt
        assert leader.log.log_end_offset == 1  # written once
        leader.read_for_follower(2, 1, 0, 0, 1 << 20)  # the follower now has offset 0
        outcome = await leader.append_as_leader(batch, acks=-1, timeout_ms=50, min_isr=2)
        assert (outcome.base_offset, outcome.record_count, leader.log.log_end_offset) == (0, 0, 1)
        leader.log.close()

    asyncio.run(scenario())


def test_a_truncated_replica_still_knows_the_producer_from_its_earlier_batches(tmp_path):
    """A leader wrote more unreplicated batches of a producer than the table remembers (5); a
    new leader's epoch makes it truncate them all. It must fall back to the producer's earlier
    batches in its log, not forget the producer (UNKNOWN_PRODUCER_ID for its next batch)."""
    from tests.unit.test_divergence import sync

    def batch(sequence: int) -> bytes:
        return encode_batch(
            [(b"k", b"v%d" % sequence, None, 0)], producer_id=7, producer_epoch=0, base_sequence=sequence
        )

    def switch(partition: Partition, leader: int, epoch: int) -> Partition:
        """A leadership change as the broker applies it: the same Partition object goes on."""
        partition.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), leader, epoch, epoch))
        partition.become_leader() if leader == partition.broker_id else partition.become_follower()
        return partition

    def replica(broker_id: int, log: PartitionReplicaLog, leader: int, epoch: int) -> Partition:
        return switch(
            Partition("t", TOPIC_ID, 0, broker_id, log, ChangeNotifier(), clock_ms=lambda: 0.0), leader, epoch
        )

    async def scenario():
        log_a = PartitionReplicaLog(tmp_path / "a", LogConfig())
        log_b = PartitionReplicaLog(tmp_path / "b", LogConfig())
        a, b = replica(1, log_a, 1, 0), replica(2, log_b, 1, 0)
        for sequence in range(3):
            await a.append_as_leader(batch(sequence), acks=1, timeout_ms=100, min_isr=1)
        await sync(b, a)  # B has sequences 0..2
        for sequence in range(3, 10):  # 7 batches B never gets
            await a.append_as_leader(batch(sequence), acks=1, timeout_ms=100, min_isr=1)
        switch(b, 2, 1)
        switch(a, 2, 1)
        await sync(a, b)
        assert log_a.log_end_offset == log_b.log_end_offset == 3
        switch(b, 1, 2)
        switch(a, 1, 2)  # A leads again: the producer goes on from sequence 3
        outcome = await a.append_as_leader(batch(3), acks=1, timeout_ms=100, min_isr=1)
        assert outcome.base_offset == 3
        log_a.close()
        log_b.close()

    asyncio.run(scenario())


def test_a_follower_made_leader_during_its_fsync_answers_the_retry_as_a_duplicate(tmp_path):
    """Issue 9 §1. B (follower) has written the producer's batch and waits for its fsync when a
    metadata update makes it leader; the producer never heard from the old leader and retries.
    The retry must be answered at the original offset, not written a second time."""
    import threading

    batch = encode_batch([(b"k", b"v", None, 0)], producer_id=7, producer_epoch=0, base_sequence=0)

    async def scenario():
        log_a = PartitionReplicaLog(tmp_path / "a", LogConfig())
        log_b = PartitionReplicaLog(tmp_path / "b", LogConfig())
        a = Partition("t", TOPIC_ID, 0, 1, log_a, ChangeNotifier(), clock_ms=lambda: 0.0)
        a.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 1, 0, 0))
        a.become_leader()
        b = Partition("t", TOPIC_ID, 0, 2, log_b, ChangeNotifier(), clock_ms=lambda: 0.0)
        b.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 1, 0, 0))
        b.become_follower()
        await a.append_as_leader(batch, acks=1, timeout_ms=100, min_isr=1)

        # Hold B's next fsync until the test lets it go.
        release, flush = threading.Event(), log_b.partition_log.flush

        def held_flush():
            release.wait(10)
            return flush()

        log_b.partition_log.flush = held_flush

        fetched = a.read_for_follower(2, 0, -1, 0, 1 << 20)
        follower_append = asyncio.create_task(b.append_as_follower(fetched.records, fetched.high_watermark))
        for _ in range(100):
            if log_b.log_end_offset == 1:
                break
            await asyncio.sleep(0.01)
        assert log_b.log_end_offset == 1, "the follower wrote the batch and waits for its fsync"

        b.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (2,), 2, 1, 1))  # B leads epoch 1
        b.become_leader()
        retry = asyncio.create_task(b.append_as_leader(batch, acks=1, timeout_ms=100, min_isr=1))
        await asyncio.sleep(0.05)
        release.set()
        await follower_append
        outcome = await retry
        assert (outcome.base_offset, outcome.record_count, log_b.log_end_offset) == (0, 0, 1), (
            "the retry was written again instead of being answered as a duplicate"
        )
        log_a.close()
        log_b.close()

    asyncio.run(scenario())


def test_a_batch_waiting_for_its_predecessor_on_a_leader_that_is_replaced_is_sent_to_the_new_leader(tmp_path):
    """A batch ahead of its producer's sequence waits for the ones before it; when leadership moves
    meanwhile, the old leader must say so (NOT_LEADER_OR_FOLLOWER: ask the new leader), not judge
    the batch by its stale sequences (OUT_OF_ORDER_SEQUENCE_NUMBER, which the producer takes for a
    gap: before the fix every later record of the partition failed)."""

    async def scenario():
        partition = leader_of_replicas_1_and_2(tmp_path)
        ahead = encode_batch([(b"k", b"v", None, 0)], producer_id=7, producer_epoch=0, base_sequence=1)
        waiting = asyncio.ensure_future(partition.append_as_leader(ahead, acks=1, timeout_ms=1000, min_isr=1))
        await asyncio.sleep(0)  # it waits for sequence 0
        assert not waiting.done()
        partition.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1, 2), 2, 1, 1))
        partition.become_follower()
        with pytest.raises(RaftlogError) as failure:
            await waiting
        assert failure.value.reason == "NOT_LEADER_OR_FOLLOWER", failure.value
        assert partition.log.log_end_offset == 0
        partition.log.close()

    asyncio.run(scenario())
