"""A partition log whose disk fails: out of service at the first failed write or fsync, never
retried, and no batch it held in flight is acknowledged (neither the append nor a retry)."""

import asyncio
import errno
import os

import pytest

from raftlog.errors import RaftlogError
from raftlog.log import LogConfig
from raftlog.log.record_batch import encode_batch
from raftlog.metadata.image import PartitionInfo
from raftlog.replication.log_adapter import PartitionReplicaLog
from raftlog.replication.notifier import ChangeNotifier
from raftlog.replication.partition import Partition

TOPIC_ID = b"T" * 16


def leader_of(tmp_path, config: LogConfig | None = None) -> Partition:
    partition = Partition(
        "t",
        TOPIC_ID,
        0,
        1,
        PartitionReplicaLog(tmp_path / "t-0", config or LogConfig()),
        ChangeNotifier(),
        clock_ms=lambda: 0.0,
    )
    partition.apply_metadata(PartitionInfo(TOPIC_ID, 0, (1,), (1,), 1, 0, 0))
    partition.become_leader()
    return partition


def producer_batch(sequence: int) -> bytes:
    return encode_batch([(b"k", b"v%d" % sequence, None, 0)], producer_id=7, producer_epoch=0, base_sequence=sequence)


def test_a_failed_fsync_is_never_retried_and_no_retry_of_its_batch_is_acknowledged(tmp_path, monkeypatch):
    """PostgreSQL's fsyncgate: after a failed fsync the kernel may have dropped the dirty pages,
    so a second fsync that succeeds proves nothing. The retry of the batch must not be answered
    as a duplicate of data that may not be on disk."""

    async def scenario():
        leader = leader_of(tmp_path)
        fsyncs = []

        def failing_fdatasync(fd):
            fsyncs.append(fd)
            raise OSError(errno.EIO, "injected fsync failure")

        real_fdatasync = os.fdatasync
        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        with pytest.raises(RaftlogError) as failure:
            await leader.append_as_leader(producer_batch(0), acks=1, timeout_ms=1000, min_isr=1)
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        failed_fsyncs = len(fsyncs)
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)  # the next fsync would "succeed"
        for attempt, batch in (("retry", producer_batch(0)), ("next batch", producer_batch(1))):
            with pytest.raises(RaftlogError) as failure:
                await leader.append_as_leader(batch, acks=1, timeout_ms=1000, min_isr=1)
            assert failure.value.reason == "KAFKA_STORAGE_ERROR", attempt
        assert len(fsyncs) == failed_fsyncs == 1
        with pytest.raises(RaftlogError) as failure:
            leader.log.read(0, 1 << 20)  # what it holds is for recovery to judge after a restart
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"

    asyncio.run(scenario())


def test_an_append_during_a_flush_still_needs_its_own_flush(tmp_path, monkeypatch):
    """The flush runs on a worker thread while appends go on on the event loop. An append that
    lands after the flush has taken the log end must still be flushed (a counter reset on the
    flush thread lost it: its acks=all/flush.messages=1 append then skipped its fsync)."""
    import threading

    from raftlog.log import PartitionLog

    log = PartitionLog(tmp_path / "t-0", LogConfig())
    log.append(encode_batch([(None, b"first", None, 0)]), leader_epoch=0)
    flusher_read_end, appended = threading.Event(), threading.Event()
    real_end = PartitionLog.log_end_offset

    def hooked_end(self):
        value = real_end.fget(self)
        if threading.current_thread().name == "flusher" and not flusher_read_end.is_set():
            flusher_read_end.set()  # the flush has taken the log end: now the event loop appends
            assert appended.wait(10), "the append never came"
        return value

    monkeypatch.setattr(PartitionLog, "log_end_offset", property(hooked_end))
    flusher = threading.Thread(target=log.flush, name="flusher")
    flusher.start()
    assert flusher_read_end.wait(10)
    log.append(encode_batch([(None, b"second", None, 0)]), leader_epoch=0)
    appended.set()
    flusher.join(10)
    assert not flusher.is_alive()
    assert log.needs_flush(), "offset 1 was written after the flush took the log end: it is not durable yet"
    log.close()


def test_a_short_write_takes_the_log_out_of_service_and_recovery_keeps_every_whole_batch(tmp_path, monkeypatch):
    """A full disk: the write stops halfway (torn bytes in the segment). No later append may land
    behind them; on reopen the log ends at its last whole batch and takes appends again."""
    from raftlog.log import PartitionLog
    from raftlog.log import segment as segment_module

    directory = tmp_path / "t-0"
    log = PartitionLog(directory, LogConfig())
    log.append(encode_batch([(None, b"kept", None, 0)]), leader_epoch=0)
    log.flush()
    real_write = os.write

    def disk_full_write(fd, data):
        return real_write(fd, bytes(data)[: len(data) // 2])  # what a full disk does: a short write

    monkeypatch.setattr(segment_module.os, "write", disk_full_write)
    with pytest.raises(RaftlogError) as failure:
        log.append(encode_batch([(None, b"torn", None, 0)]), leader_epoch=0)
    assert failure.value.reason == "KAFKA_STORAGE_ERROR"
    monkeypatch.setattr(segment_module.os, "write", real_write)  # space is freed
    size_after_failure = log.active.log_path.stat().st_size
    for attempt in ("append", "flush"):
        with pytest.raises(RaftlogError) as failure:
            log.append(
                encode_batch([(None, b"later", None, 0)]), leader_epoch=0
            ) if attempt == "append" else log.flush()
        assert failure.value.reason == "KAFKA_STORAGE_ERROR", attempt
    assert log.active.log_path.stat().st_size == size_after_failure, "nothing written after the failed write"
    log.close()
    reopened = PartitionLog(directory, LogConfig())
    assert reopened.log_end_offset == 1
    reopened.append(encode_batch([(None, b"after", None, 0)]), leader_epoch=0)
    from raftlog.log.record_batch import iter_batches

    values = [r.value for _, records in iter_batches(reopened.read(0, 1 << 20)) for r in records]
    assert values == [b"kept", b"after"]
    reopened.close()


def test_on_the_event_loop_no_fsync_runs_but_a_lone_segment_fdatasync(tmp_path, monkeypatch):
    """Appends that roll segments, new leader epochs, truncation and retention: every fsync of an
    index, a directory or a checkpoint happens on a worker thread, and the checkpoints are on disk
    afterwards; only a round that is a single fdatasync of a segment may run on the loop
    (log/sync_policy.py)."""
    import threading

    from raftlog.log.partition_log import RECOVERY_POINT_FILE

    synced = []  # (call, file, on the loop thread)
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def recording(real):
        def call(fd):
            path = os.readlink(f"/proc/self/fd/{fd}")
            synced.append((real.__name__, path, threading.current_thread() is threading.main_thread()))
            return real(fd)

        return call

    async def scenario():
        replica_log = PartitionReplicaLog(tmp_path / "t-0", LogConfig(segment_bytes=300, retention_bytes=600))
        monkeypatch.setattr(os, "fsync", recording(real_fsync))
        monkeypatch.setattr(os, "fdatasync", recording(real_fdatasync))
        for epoch in range(3):
            replica_log.assign_epoch(epoch, replica_log.log_end_offset)
            for i in range(10):
                await replica_log.append_as_leader(encode_batch([(None, b"v%d" % i, None, 0)]), epoch)
        replica_log.truncate_to(replica_log.log_end_offset - 2)
        await replica_log.persist()
        await replica_log.maintain(high_watermark=replica_log.log_end_offset)
        await replica_log.persist()
        monkeypatch.setattr(os, "fsync", real_fsync)
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        return replica_log

    replica_log = asyncio.run(scenario())
    on_loop = [(call, path) for call, path, loop in synced if loop]
    assert any(not loop for _, _, loop in synced) and on_loop, synced  # both kinds of round ran
    assert all(call == "fdatasync" and path.endswith(".log") for call, path in on_loop), on_loop
    partition_log = replica_log.partition_log
    assert partition_log.log_start_offset > 0  # retention ran
    assert int((partition_log.directory / RECOVERY_POINT_FILE).read_text()) == partition_log.log_end_offset
    epochs_on_disk = (partition_log.directory / "leader-epoch-checkpoint").read_text().splitlines()[2:]
    assert (
        epochs_on_disk
        == [f"{e} {o}" for e, o in partition_log.epochs.entries]
        == [f"2 {partition_log.log_start_offset}"]
    )
    assert int((partition_log.directory / "log-start-offset-checkpoint").read_text()) == partition_log.log_start_offset
    replica_log.close()


def _cluster_with_topics(*topics: tuple[str, bytes, int]):
    from raftlog.metadata import records
    from tests.unit.replica_manager_harness import FakeStateMachine, register

    state_machine = FakeStateMachine()
    register(state_machine, 1)
    for name, topic_id, count in topics:
        state_machine.apply(
            records.topic(name, topic_id), *[records.partition(topic_id, i, [1], 1) for i in range(count)]
        )
    return state_machine


def test_a_failed_write_takes_its_log_dir_offline_and_the_broker_keeps_serving_the_others(tmp_path, monkeypatch):
    """Kafka's failed log dir: one failed fsync in dir A takes every partition of A out of
    service on this broker (KAFKA_STORAGE_ERROR, reported to the controller, never reopened
    until restart, nothing written there again); dir B goes on; a restart recovers A."""
    from raftlog.replication.log_adapter import open_replica_log
    from tests.unit.replica_manager_harness import make_manager

    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    t_id, u_id = b"T" * 16, b"U" * 16
    state_machine = _cluster_with_topics(("t", t_id, 2), ("u", u_id, 1))

    def manager_over_dirs():
        holder = {}

        def factory(topic, index, config):
            log_dir = dir_a if topic == "t" else dir_b
            return open_replica_log([log_dir], topic, index, config, offline_dirs=holder["m"].offline_log_dirs)

        holder["m"] = make_manager(1, state_machine, log_factory=factory)
        return holder["m"]

    async def scenario():
        manager = manager_over_dirs()
        await manager.reconcile()
        for name, index in (("t", 0), ("t", 1), ("u", 0)):
            await manager.partition_by_name(name, index).append_as_leader(
                encode_batch([(None, b"before", None, 0)]), acks=1, timeout_ms=1000, min_isr=1
            )
        real_fdatasync = os.fdatasync

        def failing_fdatasync(fd):
            raise OSError(errno.EIO, "injected fsync failure")

        monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
        with pytest.raises(RaftlogError) as failure:
            await manager.partition_by_name("t", 0).append_as_leader(
                encode_batch([(None, b"lost", None, 0)]), acks=1, timeout_ms=1000, min_isr=1
            )
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        monkeypatch.setattr(os, "fdatasync", real_fdatasync)
        await asyncio.sleep(0)  # the failure is handled on the event loop
        assert sorted(manager.offline_replicas()) == [(t_id, 0), (t_id, 1)]
        assert manager.offline_log_dirs == {dir_a}
        sizes = {p: p.stat().st_size for p in dir_a.rglob("*") if p.is_file()}
        for index in (0, 1):
            with pytest.raises(RaftlogError) as failure:
                manager.partition_by_name("t", index)
            assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        await manager.partition_by_name("u", 0).append_as_leader(
            encode_batch([(None, b"after", None, 0)]), acks=1, timeout_ms=1000, min_isr=1
        )
        await manager.reconcile()  # a metadata change meanwhile: dir A stays offline
        assert sorted(manager.offline_replicas()) == [(t_id, 0), (t_id, 1)]
        assert {p: p.stat().st_size for p in dir_a.rglob("*") if p.is_file()} == sizes, "dir A was written"
        await manager.stop()

        restarted = manager_over_dirs()
        await restarted.reconcile()
        assert restarted.offline_replicas() == []
        t0 = restarted.partition_by_name("t", 0)
        assert t0.log.log_end_offset in (1, 2)  # "lost" was never acknowledged: recovery may keep it or not
        await t0.append_as_leader(encode_batch([(None, b"again", None, 0)]), acks=1, timeout_ms=1000, min_isr=1)
        await restarted.stop()

    asyncio.run(scenario())


def test_a_log_that_cannot_be_opened_does_not_keep_the_broker_from_hosting_the_others(tmp_path):
    from raftlog.replication.log_adapter import open_replica_log
    from tests.unit.replica_manager_harness import make_manager

    t_id = b"T" * 16
    state_machine = _cluster_with_topics(("t", t_id, 3))

    def factory(topic, index, config):
        if index == 1:
            raise ValueError("an unreadable checkpoint")  # anything at all
        return open_replica_log([tmp_path], topic, index, config)

    async def scenario():
        manager = make_manager(1, state_machine, log_factory=factory)
        await manager.reconcile()
        assert manager.offline_replicas() == [(t_id, 1)]
        for index in (0, 2):
            await manager.partition_by_name("t", index).append_as_leader(
                encode_batch([(None, b"v", None, 0)]), acks=1, timeout_ms=1000, min_isr=1
            )
        with pytest.raises(RaftlogError) as failure:
            manager.partition_by_name("t", 1)
        assert failure.value.reason == "KAFKA_STORAGE_ERROR"
        await manager.stop()

    asyncio.run(scenario())


def test_a_log_with_a_garbled_epoch_checkpoint_opens_and_rebuilds_it(tmp_path):
    from raftlog.log import PartitionLog

    log = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=300))
    for epoch in (0, 0, 3, 3, 5):
        log.append(encode_batch([(None, b"v" * 50, None, 0)]), leader_epoch=epoch)
    entries = list(log.epochs.entries)
    log.close()
    (tmp_path / "t-0" / "leader-epoch-checkpoint").write_bytes(b"0\nthree\n\xff garbage")
    reopened = PartitionLog(tmp_path / "t-0", LogConfig(segment_bytes=300))
    assert reopened.epochs.entries == entries == [(0, 0), (3, 2), (5, 4)]
    reopened.close()


def test_a_garbled_batch_length_in_a_sealed_segment_cuts_the_log_there_and_marks_durable_data_lost(tmp_path):
    """Below the recovery point only the index tail is read; a batch whose length field rotted
    must not be skipped over silently (later segments kept behind a hole) nor stop the open."""
    from raftlog.log import PartitionLog

    directory = tmp_path / "t-0"
    log = PartitionLog(directory, LogConfig(segment_bytes=300))
    for i in range(20):
        log.append(encode_batch([(None, b"v%02d" % i + b"x" * 40, None, 0)]), leader_epoch=0)
    sealed = log.segments[1]
    base, path = sealed.base_offset, sealed.log_path
    log.close()
    (directory / path.with_suffix(".index").name).unlink()  # force the index rebuild path
    data = bytearray(path.read_bytes())
    data[8:12] = (10**6).to_bytes(4, "big")  # the first batch's length now runs past the file
    path.write_bytes(bytes(data))
    reopened = PartitionLog(directory, LogConfig(segment_bytes=300))
    assert reopened.log_end_offset == base, "cut before the garbled batch, later segments dropped"
    assert reopened.durable_data_lost_at == base
    reopened.close()


def test_a_new_offline_replica_is_reported_at_once_not_after_the_heartbeat_interval():
    from raftlog.broker.lifecycle import BrokerLifecycle
    from raftlog.tasks import TaskSupervisor
    from raftlog.v1 import controller_pb2

    heartbeats = []
    offline: list[tuple[bytes, int]] = []

    class FakeController:
        async def call(self, method, request):
            if method == "RegisterBroker":
                return controller_pb2.RegisterBrokerResponse(broker_epoch=5)
            heartbeats.append([(r.topic_id, r.partition) for r in request.offline_replicas])
            return controller_pb2.BrokerHeartbeatResponse(is_fenced=False)

    async def scenario():
        lifecycle = BrokerLifecycle(
            "c",
            1,
            "127.0.0.1",
            9092,
            FakeController(),
            lambda: 0,
            heartbeat_interval_ms=600_000,
            session_timeout_ms=900_000,
            tasks=TaskSupervisor(),
            clock_skew_max_ms=300_000,
            offline_replicas=lambda: list(offline),
        )
        await lifecycle.start()
        for _ in range(200):
            if heartbeats:
                break
            await asyncio.sleep(0.01)
        offline.append((b"T" * 16, 0))
        lifecycle.heartbeat_now()
        for _ in range(200):  # far below the 10-minute interval
            if len(heartbeats) >= 2:
                break
            await asyncio.sleep(0.01)
        await lifecycle.stop()

    asyncio.run(scenario())
    assert heartbeats[:2] == [[], [(b"T" * 16, 0)]]
