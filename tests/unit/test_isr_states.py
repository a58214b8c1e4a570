"""The leader's ISR states (issue 8): committed, pending expand, pending shrink, each with its
maximal ISR for the high watermark; only Partition moves between them."""

import asyncio

import pytest

from raftlog.metadata.image import PartitionInfo
from raftlog.replication import isr as isr_rules
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from tests.unit.fake_replica_log import FakeReplicaLog

TOPIC_ID = b"I" * 16
LAG_MAX_MS = 1000


class Clock:
    def __init__(self) -> None:
        self.now_ms = 0.0

    def __call__(self) -> float:
        return self.now_ms


def leader_of(isr, partition_epoch=0, clock=None) -> Partition:
    partition = Partition("t", TOPIC_ID, 0, 1, FakeReplicaLog(), ChangeNotifier(), clock_ms=clock or Clock())
    partition.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2, 3), tuple(isr), 1, 0, partition_epoch))
    partition.become_leader()
    return partition


def commit(partition: Partition, isr, partition_epoch: int) -> None:
    partition.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2, 3), tuple(isr), 1, 0, partition_epoch))


async def write(partition: Partition, count: int) -> None:
    for i in range(count):
        await partition.append_as_leader(b"m%d" % i, acks=1, timeout_ms=100, min_isr=1)


def test_a_pending_shrink_keeps_waiting_for_the_lagging_replica_until_it_commits():
    async def scenario():
        clock = Clock()
        leader = leader_of((1, 2, 3), clock=clock)
        await write(leader, 5)
        clock.now_ms = 500
        leader.read_for_follower(2, 5, 0, 0, 1 << 20)  # 2 is caught up, 3 never fetches
        clock.now_ms = 1600
        leader.read_for_follower(2, 5, 0, 0, 1 << 20)
        state = leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3})
        assert isinstance(state, isr_rules.PendingShrinkIsr) and state.requested == (1, 2)
        assert leader.maximal_isr == (1, 2, 3)
        assert leader.high_watermark == 0, "3 may stay in the ISR (the shrink may be refused)"
        assert leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3}) is None, "one change in flight"
        commit(leader, (1, 2), partition_epoch=1)
        assert isinstance(leader.isr_state, isr_rules.CommittedIsr) and leader.maximal_isr == (1, 2)
        leader.read_for_follower(2, 5, 0, 0, 1 << 20)
        assert leader.high_watermark == 5

    asyncio.run(scenario())


def test_a_pending_expansion_counts_the_joining_replica_at_once():
    async def scenario():
        clock = Clock()
        leader = leader_of((1,), clock=clock)
        await write(leader, 3)
        assert leader.high_watermark == 3
        leader.read_for_follower(2, 3, 0, 0, 1 << 20)  # 2 caught up: it may join
        state = leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3})
        assert isinstance(state, isr_rules.PendingExpandIsr) and state.requested == (1, 2)
        assert leader.maximal_isr == (1, 2) and leader.isr == (1,)
        await write(leader, 2)
        assert leader.high_watermark == 3, "the joining replica lacks offsets 3 and 4"
        leader.read_for_follower(2, 5, 0, 0, 1 << 20)
        assert leader.high_watermark == 5

    asyncio.run(scenario())


def test_a_refused_change_goes_back_to_the_committed_isr_and_a_stale_answer_changes_nothing():
    async def scenario():
        leader = leader_of((1,))
        leader.read_for_follower(2, 0, -1, 0, 1 << 20)
        first = leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3})
        leader.isr_change_ended(first, None)  # refused
        assert leader.isr_state == isr_rules.CommittedIsr((1,))
        second = leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3})
        assert second is not None and second is not first
        commit(leader, (1, 2), partition_epoch=1)  # the second one landed
        leader.read_for_follower(3, 0, -1, 0, 1 << 20)
        third = leader.prepare_isr_change(LAG_MAX_MS, unfenced={1, 2, 3})
        assert isinstance(third, isr_rules.PendingExpandIsr) and third.adding == (3,)
        leader.isr_change_ended(second, None)  # a late answer for a superseded change
        assert leader.isr_state is third, "a stale answer must not cancel the change in flight"
        leader.isr_change_ended(third, 2)  # accepted: committed by the metadata update that follows
        assert leader.isr_state is third
        commit(leader, (1, 2, 3), partition_epoch=2)
        assert leader.isr_state == isr_rules.CommittedIsr((1, 2, 3))

    asyncio.run(scenario())


def test_isr_states_refuse_what_cannot_be():
    with pytest.raises(AssertionError, match="never empty"):
        isr_rules.CommittedIsr(())
    with pytest.raises(AssertionError, match="never empties"):
        isr_rules.PendingShrinkIsr((1,), (1,), ())
    leader = leader_of((1, 2))
    with pytest.raises(AssertionError, match="not in its ISR"):
        leader.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2, 3), (2,), 1, 0, 1))


def test_a_leader_alone_in_its_isr_advances_the_high_watermark_on_its_own_writes():
    """With the followers out of the ISR (or replication factor 1), acks=all timed out and
    consumers saw nothing: only a follower's fetch recomputed the high watermark."""

    async def scenario():
        leader = leader_of((1,))
        outcome = await leader.append_as_leader(b"m", acks=-1, timeout_ms=300, min_isr=1)
        assert outcome.base_offset == 0 and leader.high_watermark == 1
        records, high_watermark, _ = leader.read_for_consumer(0, 1 << 20)
        assert records and high_watermark == 1

    asyncio.run(scenario())
