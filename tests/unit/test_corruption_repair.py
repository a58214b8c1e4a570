"""Corrupt data at rest (issue 9 §3): the scrubber finds a flipped byte in a sealed segment, the
replica cuts its log there and fetches the records again; a leader that meets corruption hands
its leadership over first; a bad partition never stalls the fetching of the others."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from raftlog.errors import RaftlogError
from raftlog.log import LogConfig, PartitionLog
from raftlog.log.partition_log import CorruptionCounter
from raftlog.log.record_batch import HEADER_SIZE, encode_batch, iter_batches
from raftlog.log.scrubber import ScrubCursor, scrub_step
from raftlog.metadata.image import PartitionInfo
from raftlog.replication import fetcher as fetcher_module
from raftlog.replication import throttle
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition
from raftlog.tasks import TaskSupervisor
from raftlog.v1 import replication_pb2
from tests.unit.fake_replica_log import FakeReplicaLog

SMALL_SEGMENTS = LogConfig(segment_bytes=600)


def flip_a_byte_in_batch(log_path, batch_index: int) -> int:
    """Flips one payload byte (inside the CRC) of the batch_index-th batch; returns its base offset."""
    data = bytearray(log_path.read_bytes())
    position = 0
    for _ in range(batch_index):
        position += int.from_bytes(data[position + 8 : position + 12], "big") + 12
    base_offset = int.from_bytes(data[position : position + 8], "big")
    data[position + HEADER_SIZE + 3] ^= 0x40
    log_path.write_bytes(bytes(data))
    return base_offset


def values(partition_log: PartitionLog) -> list[tuple[int, bytes]]:
    out, offset = [], partition_log.log_start_offset
    while offset < partition_log.log_end_offset:
        data = partition_log.read(offset, 1 << 20, verify=True)
        for _, records in iter_batches(data):
            out += [(r.offset, r.value) for r in records if r.offset >= offset]
        offset = out[-1][0] + 1
    return out


def test_the_scrubber_finds_a_flipped_byte_in_a_sealed_segment_and_nothing_in_a_clean_log(tmp_path):
    log = PartitionLog(tmp_path, SMALL_SEGMENTS)
    for i in range(40):
        log.append(encode_batch([(None, b"value-%03d" % i, None, 0)]), leader_epoch=0)
    assert len(log.segments) > 3

    def full_pass() -> list[int]:
        cursor, found, steps = ScrubCursor(), [], 0
        while steps < 1000:
            step = scrub_step(log, cursor, max_bytes=150)  # a few batches per step: cursors resume mid-segment
            steps += 1
            if step.corrupt_offset is not None:
                found.append(step.corrupt_offset)
            if step.next_cursor.base_offset < cursor.base_offset:
                break  # wrapped around
            cursor = step.next_cursor
        return found

    assert full_pass() == []
    corrupt = flip_a_byte_in_batch(log.segments[1].log_path, 2)
    assert full_pass() == [corrupt]
    with pytest.raises(RaftlogError) as failure:
        log.read(corrupt, 1 << 20, verify=True)
    assert failure.value.reason == "KAFKA_STORAGE_ERROR"
    log.close()


def _leader_and_follower(tmp_path):
    from raftlog.metadata import records
    from raftlog.replication.log_adapter import open_replica_log
    from tests.unit.replica_manager_harness import (
        FakeStateMachine,
        make_manager,
        register,
    )

    topic_id = b"C" * 16
    state_machine = FakeStateMachine()
    register(state_machine, 1)
    register(state_machine, 2)
    state_machine.apply(
        records.topic("c", topic_id),
        records.partition(topic_id, 0, [1, 2], 1),
        records.config("topics", "c", "segment.bytes", "600"),
    )

    def manager(broker_id: int):
        return make_manager(
            broker_id,
            state_machine,
            log_factory=lambda topic, index, config: open_replica_log(
                [tmp_path / f"broker-{broker_id}"], topic, index, config
            ),
        )

    return state_machine, topic_id, manager(1), manager(2)


async def _write_values(leader: Partition, count: int) -> None:
    """count one-record batches value-000, value-001, ... through the leader (acks=1)."""
    for i in range(count):
        await leader.append_as_leader(
            encode_batch([(None, b"value-%03d" % i, None, 0)]), acks=1, timeout_ms=1000, min_isr=1
        )


async def _sync(follower: Partition, leader: Partition, rounds: int = 10) -> None:
    for _ in range(rounds):
        outcome = leader.read_for_follower(
            follower.broker_id, follower.log.log_end_offset, follower.log.latest_epoch(), follower.leader_epoch, 1 << 20
        )
        assert outcome.diverging_epoch is None
        await follower.append_as_follower(outcome.records, outcome.high_watermark)


def test_a_follower_repairs_a_corrupt_sealed_segment_from_the_leader(tmp_path):
    async def scenario():
        state_machine, topic_id, leader_manager, follower_manager = _leader_and_follower(tmp_path)
        await leader_manager.reconcile()
        await follower_manager.reconcile()
        leader, follower = leader_manager.partition_by_name("c", 0), follower_manager.partition_by_name("c", 0)
        assert leader.is_leader and not follower.is_leader
        await _write_values(leader, 40)
        await _sync(follower, leader)
        follower_log = follower.log.partition_log
        assert values(follower_log) == values(leader.log.partition_log) and len(follower_log.segments) > 3
        corrupt = flip_a_byte_in_batch(follower_log.segments[1].log_path, 1)
        found_before, repaired_before = CorruptionCounter.scrubbed, CorruptionCounter.repaired

        cursor = ScrubCursor()
        for _ in range(100):  # the scrubber's steps, as its loop runs them
            step = await follower.log.scrub(cursor, 1 << 20)
            cursor = step.next_cursor
            if step.corrupt_offset is not None:
                follower_manager.corruption_found((topic_id, 0), step.corrupt_offset, step.detail)
                break
        assert CorruptionCounter.scrubbed == found_before + 1
        assert follower.log.log_end_offset == corrupt, "cut right before the corrupt batch"
        assert follower_manager.offline_replicas() == [(topic_id, 0)], "reported: it must leave the ISR"

        await _sync(follower, leader)
        assert values(follower_log) == values(leader.log.partition_log)
        # The controller takes it out of the ISR (as it does for a reported replica): repaired.
        from raftlog.metadata import records

        state_machine.apply(records.partition_change(topic_id, 0, isr=[1]))
        await follower_manager.reconcile()
        assert follower_manager.offline_replicas() == []
        assert CorruptionCounter.repaired == repaired_before + 1
        await leader_manager.stop()
        await follower_manager.stop()

    asyncio.run(scenario())


def test_a_leader_that_meets_corrupt_data_hands_over_then_repairs_as_a_follower(tmp_path):
    """A consumer read runs into the leader's rotten batch: the consumer gets KAFKA_STORAGE_ERROR
    (it refreshes metadata and retries, never a CRC error it cannot get past), the leader stops
    serving and reports itself; once the controller has moved the leadership it cuts its log and
    fetches the records again from the new leader."""
    from raftlog.metadata import records

    async def scenario():
        state_machine, topic_id, manager_1, manager_2 = _leader_and_follower(tmp_path)
        await manager_1.reconcile()
        await manager_2.reconcile()
        leader, follower = manager_1.partition_by_name("c", 0), manager_2.partition_by_name("c", 0)
        await _write_values(leader, 40)
        await _sync(follower, leader)
        expected = values(leader.log.partition_log)
        corrupt = flip_a_byte_in_batch(leader.log.partition_log.segments[1].log_path, 0)

        with pytest.raises(RaftlogError) as failure:
            leader.read_for_consumer(corrupt, 1 << 20)
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        await asyncio.sleep(0)  # the broker handles it on the event loop
        with pytest.raises(RaftlogError) as failure:
            manager_1.partition_by_name("c", 0)
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        assert manager_1.offline_replicas() == [(topic_id, 0)]

        # What the controller does for a reported replica: broker 2 leads, broker 1 leaves the ISR.
        state_machine.apply(records.partition_change(topic_id, 0, leader=2, isr=[2]))
        await manager_1.reconcile()
        await manager_2.reconcile()
        new_leader, repaired = manager_2.partition_by_name("c", 0), manager_1.partition_by_name("c", 0)
        assert new_leader.is_leader and not repaired.is_leader
        assert repaired.log.log_end_offset == corrupt
        await _sync(repaired, new_leader)
        assert values(repaired.log.partition_log) == expected
        await manager_1.stop()
        await manager_2.stop()

    asyncio.run(scenario())


def test_one_partition_that_fails_does_not_stall_the_others_in_the_replica_fetcher(monkeypatch):
    """Partition a's records cannot be applied (a bad batch) in every response; partition b,
    behind it in the same responses, must still replicate."""

    def follower(topic: str) -> Partition:
        partition = Partition(
            topic, topic.encode() * 16, 0, 2, FakeReplicaLog(), ChangeNotifier(), clock_ms=lambda: 0.0
        )
        partition.apply_metadata(PartitionInfo(topic.encode() * 16, 0, (1, 2), (1, 2), 1, 0, 0))
        partition.become_follower()
        return partition

    a, b = follower("a"), follower("b")
    requests_seen = []

    class FakeStream:  # the fetcher's FetchStream, answering from here
        def __init__(self, channel):
            pass

        def close(self):
            pass

        async def fetch(self, request, timeout_s):
            await asyncio.sleep(0.001)
            requests_seen.append({p.topic_id: p.fetch_offset for p in request.partitions})
            results = []
            for p in request.partitions:
                if p.topic_id == a.topic_id:
                    results.append(
                        replication_pb2.ReplicaFetchResult(
                            topic_id=p.topic_id, partition=0, high_watermark=3, records=b"a bad batch"
                        )
                    )
                else:
                    records = b"%d|0|b%d" % (p.fetch_offset, p.fetch_offset) if p.fetch_offset < 3 else b""
                    results.append(
                        replication_pb2.ReplicaFetchResult(
                            topic_id=p.topic_id, partition=0, high_watermark=3, records=records
                        )
                    )
            return replication_pb2.ReplicaFetchResponse(results=results)

    monkeypatch.setattr(fetcher_module, "FetchStream", FakeStream)
    manager = SimpleNamespace(
        _broker_epoch=lambda: 7,
        cluster_id="c",
        broker_id=2,
        supervisor=TaskSupervisor(),
        throttle_config=lambda: throttle.NO_THROTTLE,
        throttles=throttle.ReplicationThrottles(2),
        replica_lag_time_max_ms=lambda: 10_000,
    )
    peers = SimpleNamespace(channel=lambda broker_id: None)

    async def scenario():
        fetcher = fetcher_module.ReplicaFetcher(manager, 1, peers)
        fetcher.add(a)
        fetcher.add(b)
        fetcher.start()
        try:
            for _ in range(500):
                if b.log.log_end_offset == 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            await fetcher.stop()

    asyncio.run(scenario())
    assert b.log.payloads() == [b"b0", b"b1", b"b2"], "b must replicate although a fails every time"
    assert a.log.log_end_offset == 0


def test_a_leader_that_is_the_last_in_sync_replica_keeps_its_log_and_leads_on(tmp_path):
    """Nobody to hand over to or repair from: cutting would drop every acknowledged record after
    the bad batch. It leads on; only reads of that batch fail."""
    from raftlog.metadata import records

    async def scenario():
        state_machine, topic_id, manager_1, manager_2 = _leader_and_follower(tmp_path)
        state_machine.apply(records.partition_change(topic_id, 0, isr=[1]))
        await manager_1.reconcile()
        leader = manager_1.partition_by_name("c", 0)
        await _write_values(leader, 40)
        corrupt = flip_a_byte_in_batch(leader.log.partition_log.segments[1].log_path, 0)
        with pytest.raises(RaftlogError):
            leader.log.read(corrupt, 1 << 20)  # what a consumer's fetch reads
        await asyncio.sleep(0)
        assert manager_1.partition_by_name("c", 0) is leader and leader.is_leader
        assert leader.log.log_end_offset == 40 and manager_1.offline_replicas() == []
        await leader.append_as_leader(encode_batch([(None, b"more", None, 0)]), acks=1, timeout_ms=1000, min_isr=1)
        await manager_1.stop()

    asyncio.run(scenario())


def test_a_fetch_answer_for_a_log_end_the_follower_no_longer_has_is_dropped(tmp_path, monkeypatch):
    """The follower's log is cut (a repair) while a fetch is out; the answer continues the old log
    end. Appending it would leave a hole of offsets in the log; it must be dropped and the next
    fetch ask from the new log end."""
    from raftlog.log.record_batch import set_base_offset
    from raftlog.replication.log_adapter import PartitionReplicaLog

    topic_id = b"F" * 16
    follower = Partition(
        "f", topic_id, 0, 2, PartitionReplicaLog(tmp_path / "f-0", LogConfig()), ChangeNotifier(), clock_ms=lambda: 0.0
    )
    follower.apply_metadata(PartitionInfo(topic_id, 0, (1, 2), (1, 2), 1, 0, 0))
    follower.become_follower()

    def batch_at(offset: int) -> bytes:
        data = bytearray(encode_batch([(None, b"r%d" % offset, None, 0)]))
        set_base_offset(data, 0, offset)
        return bytes(data)

    calls = []

    class FakeStream:  # the fetcher's FetchStream, answering from here
        def __init__(self, channel):
            pass

        def close(self):
            pass

        async def fetch(self, request, timeout_s):
            await asyncio.sleep(0.001)
            [p] = request.partitions
            calls.append(p.fetch_offset)
            if len(calls) == 3:  # the log holds offsets 0 and 1
                follower.truncate_before_corruption(1)  # a repair cuts the log while this fetch is out
            records = batch_at(p.fetch_offset) if p.fetch_offset < 4 else b""
            return replication_pb2.ReplicaFetchResponse(
                results=[
                    replication_pb2.ReplicaFetchResult(
                        topic_id=topic_id, partition=0, high_watermark=4, records=records
                    )
                ]
            )

    monkeypatch.setattr(fetcher_module, "FetchStream", FakeStream)
    manager = SimpleNamespace(
        _broker_epoch=lambda: 7,
        cluster_id="c",
        broker_id=2,
        supervisor=TaskSupervisor(),
        throttle_config=lambda: throttle.NO_THROTTLE,
        throttles=throttle.ReplicationThrottles(2),
        replica_lag_time_max_ms=lambda: 10_000,
    )

    async def scenario():
        fetcher = fetcher_module.ReplicaFetcher(manager, 1, SimpleNamespace(channel=lambda broker_id: None))
        fetcher.add(follower)
        fetcher.start()
        try:
            for _ in range(500):
                if follower.log.log_end_offset >= 4:
                    break
                await asyncio.sleep(0.01)
        finally:
            await fetcher.stop()

    asyncio.run(scenario())
    assert calls[:4] == [0, 1, 2, 1], "after the cut, the next fetch asks from the new log end"
    assert [offset for offset, _ in values(follower.log.partition_log)] == [0, 1, 2, 3], "no hole in the offsets"
    follower.log.close()


def test_a_replica_whose_recovery_cut_fsynced_data_does_not_lead_or_count_for_the_isr_until_caught_up(tmp_path):
    """Broker 2's log lost fsynced records at recovery (a rotten batch in its active segment).
    Elected leader right after its restart, it must hand over instead; it is reported (so it
    leaves the ISR) and counts again only once it has fetched past the cut."""
    from raftlog.metadata import records

    async def scenario():
        state_machine, topic_id, manager_1, manager_2 = _leader_and_follower(tmp_path)
        state_machine.apply(records.config("topics", "c", "segment.bytes", "1048576"))  # one active segment
        await manager_1.reconcile()
        await manager_2.reconcile()
        leader, follower = manager_1.partition_by_name("c", 0), manager_2.partition_by_name("c", 0)
        await _write_values(leader, 20)
        await _sync(follower, leader)
        path = follower.log.partition_log.active.log_path
        await manager_2.stop()  # a clean stop: the recovery point is the log end
        corrupt = flip_a_byte_in_batch(path, 5)

        # Broker 1 is gone; the controller made broker 2 the leader before knowing its log was cut.
        state_machine.apply(records.partition_change(topic_id, 0, leader=2))
        from raftlog.replication.log_adapter import open_replica_log
        from tests.unit.replica_manager_harness import make_manager

        manager_2 = make_manager(
            2,
            state_machine,
            log_factory=lambda topic, index, config: open_replica_log([tmp_path / "broker-2"], topic, index, config),
        )
        await manager_2.reconcile()
        with pytest.raises(RaftlogError) as failure:
            manager_2.partition_by_name("c", 0)
        assert failure.value.reason == "KAFKA_STORAGE_ERROR", "it must not lead with a cut log"
        assert manager_2.offline_replicas() == [(topic_id, 0)]

        # The controller hands the leadership back to broker 1 and takes broker 2 out of the ISR.
        state_machine.apply(records.partition_change(topic_id, 0, leader=1, isr=[1]))
        await manager_1.reconcile()
        await manager_2.reconcile()
        follower = manager_2.partition_by_name("c", 0)
        assert not follower.is_leader and follower.log.log_end_offset == corrupt
        assert manager_2.offline_replicas() == []  # out of the ISR: the leader's join rule decides now
        repaired_before = CorruptionCounter.repaired
        await _sync(follower, manager_1.partition_by_name("c", 0))
        manager_2.offline_replicas()  # a heartbeat
        assert CorruptionCounter.repaired == repaired_before + 1
        assert values(follower.log.partition_log) == values(manager_1.partition_by_name("c", 0).log.partition_log)
        await manager_1.stop()
        await manager_2.stop()

    asyncio.run(scenario())


def test_a_garbled_batch_length_below_the_recovery_point_does_not_keep_the_broker_from_hosting_partitions(tmp_path):
    """Recovery does not read sealed segments below the recovery point (their index is intact),
    but rebuilding producer state scans their headers: a rotten length there must cut the log
    at that batch (the replica fetches the rest again), not fail the broker's reconcile."""
    from raftlog.metadata import records

    async def scenario():
        state_machine, topic_id, manager_1, manager_2 = _leader_and_follower(tmp_path)
        other_id = b"O" * 16
        state_machine.apply(
            records.topic("other", other_id),
            records.partition(other_id, 0, [1, 2], 1),
            records.config("topics", "c", "index.interval.bytes", "0"),
        )  # every batch indexed
        await manager_1.reconcile()
        await manager_2.reconcile()
        leader, follower = manager_1.partition_by_name("c", 0), manager_2.partition_by_name("c", 0)
        await _write_values(leader, 40)
        await _sync(follower, leader)
        sealed = follower.log.partition_log.segments[1]
        await manager_2.stop()
        data = bytearray(sealed.log_path.read_bytes())
        second = int.from_bytes(data[8:12], "big") + 12  # the second batch of the segment
        data[second + 8 : second + 12] = (10**6).to_bytes(4, "big")
        sealed.log_path.write_bytes(bytes(data))

        from raftlog.replication.log_adapter import open_replica_log
        from tests.unit.replica_manager_harness import make_manager

        manager_2 = make_manager(
            2,
            state_machine,
            log_factory=lambda topic, index, config: open_replica_log([tmp_path / "broker-2"], topic, index, config),
        )
        await manager_2.reconcile()
        manager_2.partition_by_name("other", 0)  # hosted
        repaired = manager_2.partition_by_name("c", 0)
        assert repaired.log.log_end_offset == sealed.base_offset + 1, "cut at the garbled batch"
        assert manager_2.offline_replicas() == [(topic_id, 0)], "reported until it is out of the ISR"
        await _sync(repaired, leader)
        assert values(repaired.log.partition_log) == values(leader.log.partition_log)
        await manager_1.stop()
        await manager_2.stop()

    asyncio.run(scenario())


def test_the_scrubber_finds_a_garbled_batch_length_and_the_follower_cuts_before_it(tmp_path):
    """A length field that rotted (outside the CRC) makes the batch unreadable: the repair must
    still cut there, not fail on reading it."""

    async def scenario():
        state_machine, topic_id, leader_manager, follower_manager = _leader_and_follower(tmp_path)
        await leader_manager.reconcile()
        await follower_manager.reconcile()
        leader, follower = leader_manager.partition_by_name("c", 0), follower_manager.partition_by_name("c", 0)
        await _write_values(leader, 40)
        await _sync(follower, leader)
        sealed = follower.log.partition_log.segments[1]
        data = bytearray(sealed.log_path.read_bytes())
        second = int.from_bytes(data[8:12], "big") + 12
        data[second + 8 : second + 12] = (10**6).to_bytes(4, "big")
        sealed.log_path.write_bytes(bytes(data))
        sealed.size = len(data)  # what the broker believes: the file did not change size

        cursor = ScrubCursor()
        for _ in range(100):
            step = await follower.log.scrub(cursor, 1 << 20)
            cursor = step.next_cursor
            if step.corrupt_offset is not None:
                follower_manager.corruption_found((topic_id, 0), step.corrupt_offset, step.detail)
                break
        assert follower.log.log_end_offset == sealed.base_offset + 1
        await _sync(follower, leader)
        assert values(follower.log.partition_log) == values(leader.log.partition_log)
        await leader_manager.stop()
        await follower_manager.stop()

    asyncio.run(scenario())
