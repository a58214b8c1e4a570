"""The log-divergence scenarios behind Kafka's KIP-101 and KIP-279, on the replication rules.

Two replicas A (broker 1) and B (broker 2) with in-memory logs; "crashes" are modelled by
making a new Partition object over the same log (what a restarted broker does) and leader
changes by applying new partition metadata, exactly as the controller would.
"""

import asyncio

from raftlog.errors import RaftlogError
from raftlog.metadata.image import PartitionInfo
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from tests.unit.fake_replica_log import FakeReplicaLog

TOPIC_ID = b"T" * 16


def info(leader: int, epoch: int, isr=(1, 2)) -> PartitionInfo:
    return PartitionInfo(TOPIC_ID, 0, (1, 2), tuple(isr), leader, epoch, epoch)


def replica(broker_id: int, log: FakeReplicaLog, state: PartitionInfo) -> Partition:
    partition = Partition("t", TOPIC_ID, 0, broker_id, log, ChangeNotifier(), clock_ms=lambda: 0.0)
    role = partition.apply_metadata(state)
    partition.become_leader() if role == "leader" else partition.become_follower()
    return partition


async def sync_once(follower: Partition, leader: Partition) -> None:
    """One fetch round of the follower against the leader, as the ReplicaFetcher does it."""
    outcome = leader.read_for_follower(
        follower.broker_id, follower.log.log_end_offset, follower.log.latest_epoch(), follower.leader_epoch, 1 << 20
    )
    if outcome.diverging_epoch is not None:
        follower.truncate_for_divergence(*outcome.diverging_epoch)
    else:
        await follower.append_as_follower(outcome.records, outcome.high_watermark)


async def sync(follower: Partition, leader: Partition, rounds: int = 5) -> None:
    for _ in range(rounds):
        await sync_once(follower, leader)


def test_kip_101_a_restarted_follower_does_not_lose_acknowledged_records():
    async def scenario():
        log_a, log_b = FakeReplicaLog(), FakeReplicaLog()
        a, b = replica(1, log_a, info(1, 0)), replica(2, log_b, info(1, 0))
        for payload in (b"m1", b"m2"):
            await a.append_as_leader(payload, acks=1, timeout_ms=1000, min_isr=1)
        await sync(b, a, rounds=1)  # B has m1, m2
        # B's next fetch tells A that B has both: A's HW becomes 2 and m2 is acknowledged, but
        # B crashes before it reads the answer, so B's own HW is still behind.
        a.read_for_follower(2, log_b.log_end_offset, log_b.latest_epoch(), 0, 1 << 20)
        assert a.high_watermark == 2 and b.high_watermark < 2
        b = replica(2, log_b, info(1, 0))  # B restarts as a follower...
        # ...and A dies before B fetches again: B leads epoch 1 with what it has.
        b_leader = replica(2, log_b, info(2, 1, isr=(2,)))
        assert log_b.payloads() == [b"m1", b"m2"], "the acknowledged m2 must survive on B"
        a_follower = replica(1, log_a, info(2, 1, isr=(2,)))  # A comes back as a follower
        await b_leader.append_as_leader(b"m3", acks=1, timeout_ms=1000, min_isr=1)
        await sync(a_follower, b_leader)
        assert log_a.payloads() == log_b.payloads() == [b"m1", b"m2", b"m3"]

    asyncio.run(scenario())


def test_kip_279_divergence_across_several_leader_changes_ends_identical():
    async def scenario():
        log_a, log_b = FakeReplicaLog(), FakeReplicaLog()
        a, b = replica(1, log_a, info(1, 0)), replica(2, log_b, info(1, 0))
        await a.append_as_leader(b"m1", acks=1, timeout_ms=1000, min_isr=1)
        await sync(b, a, rounds=2)
        await a.append_as_leader(b"m2", acks=1, timeout_ms=1000, min_isr=1)  # never reaches B
        # A crashes; B leads epoch 1 and writes m3 at offset 1; B crashes
        b = replica(2, log_b, info(2, 1))
        await b.append_as_leader(b"m3", acks=1, timeout_ms=1000, min_isr=1)
        # A returns and leads epoch 2 (unclean), writes m4; B returns as its follower
        a = replica(1, log_a, info(1, 2))
        await a.append_as_leader(b"m4", acks=1, timeout_ms=1000, min_isr=1)
        b = replica(2, log_b, info(1, 2))
        assert log_a.payloads() == [b"m1", b"m2", b"m4"] and log_b.payloads() == [b"m1", b"m3"]
        await sync(b, a)
        assert log_b.payloads() == log_a.payloads() == [b"m1", b"m2", b"m4"]
        assert [e for _, e, _ in log_b.batches] == [e for _, e, _ in log_a.batches]

    asyncio.run(scenario())


def test_a_stale_leader_epoch_is_fenced():
    async def scenario():
        a = replica(1, FakeReplicaLog(), info(1, 3))
        follower = replica(2, FakeReplicaLog(), info(1, 2))  # has not seen epoch 3 yet
        try:
            await sync_once(follower, a)
        except Exception as exc:  # noqa: BLE001
            assert getattr(exc, "reason", None) == "FENCED_LEADER_EPOCH"
        else:
            raise AssertionError("a fetch in an old epoch must be refused")

    asyncio.run(scenario())


def test_acks_all_waits_for_the_isr_and_fails_below_min_isr():
    async def scenario():
        a = replica(1, FakeReplicaLog(), info(1, 0))
        b = replica(2, FakeReplicaLog(), info(1, 0))
        produce = asyncio.create_task(a.append_as_leader(b"m1", acks=-1, timeout_ms=2000, min_isr=2))
        await asyncio.sleep(0.01)
        assert not produce.done()
        await sync(b, a, rounds=2)
        assert (await produce).base_offset == 0
        lonely = replica(1, FakeReplicaLog(), info(1, 1, isr=(1,)))
        try:
            await lonely.append_as_leader(b"m", acks=-1, timeout_ms=100, min_isr=2)
        except Exception as exc:  # noqa: BLE001
            assert exc.reason == "NOT_ENOUGH_REPLICAS"
        else:
            raise AssertionError("acks=all below min.insync.replicas must fail")
        assert (await lonely.append_as_leader(b"m", acks=1, timeout_ms=100, min_isr=2)).base_offset == 0

    asyncio.run(scenario())


def test_a_caught_up_but_fenced_follower_is_not_proposed_for_the_isr():
    """A killed follower's last fetch may still look caught up (no new writes); once the
    controller has fenced it and shrunk the ISR, the leader must not ask to add it back."""

    async def scenario():
        log_a, log_b = FakeReplicaLog(), FakeReplicaLog()
        a, b = replica(1, log_a, info(1, 0)), replica(2, log_b, info(1, 0))
        await a.append_as_leader(b"m1", acks=1, timeout_ms=1000, min_isr=1)
        await sync(b, a)
        a.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1, 2), (1,), 1, 0, 1))  # the controller fenced B
        assert a.isr_change_wanted(lag_max_ms=10_000, unfenced={1}) is None
        assert a.isr_change_wanted(lag_max_ms=10_000, unfenced={1, 2}) == (1, 2)

    asyncio.run(scenario())


def test_a_leadership_that_wrote_nothing_does_not_stop_the_replica_from_following():
    """B led epoch 1 briefly and wrote nothing (its epoch cache still says epoch 1 starts at its
    log end); A then leads epoch 2. B's fetches carry last epoch 1, which A never had: B must
    drop that empty epoch and catch up, not be told to diverge at its own end forever."""

    async def scenario():
        log_a, log_b = FakeReplicaLog(), FakeReplicaLog()
        a, b = replica(1, log_a, info(1, 0)), replica(2, log_b, info(1, 0))
        await a.append_as_leader(b"m1", acks=1, timeout_ms=1000, min_isr=1)
        await sync(b, a)
        replica(2, log_b, info(2, 1))  # B leads epoch 1, appends nothing
        a = replica(1, log_a, info(1, 2))  # A leads epoch 2 (B's epoch 1 never reached it)
        await a.append_as_leader(b"m2", acks=1, timeout_ms=1000, min_isr=1)
        b = replica(2, log_b, info(1, 2))
        await sync(b, a)
        assert log_b.payloads() == log_a.payloads() == [b"m1", b"m2"]

    asyncio.run(scenario())


def test_a_consumer_between_the_high_watermark_and_the_log_end_waits_instead_of_resetting():
    """A new leader's high watermark may trail the position a consumer reached on the old one."""

    async def scenario():
        a = replica(1, FakeReplicaLog(), info(1, 0))
        for payload in (b"m1", b"m2"):
            await a.append_as_leader(payload, acks=1, timeout_ms=1000, min_isr=1)
        assert a.high_watermark == 0 and a.log.log_end_offset == 2  # B has not fetched yet
        assert a.read_for_consumer(2, 1 << 20) == (b"", 0, 0)
        try:
            a.read_for_consumer(3, 1 << 20)
        except RaftlogError as exc:
            assert exc.reason == "OFFSET_OUT_OF_RANGE"
        else:
            raise AssertionError("an offset past the log end must be out of range")

    asyncio.run(scenario())
