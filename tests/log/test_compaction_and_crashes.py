"""Compaction (latest value per key, tombstones, crash-safe swap) and a writer killed with -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from raftlog.log import GroupCommit, LogConfig, PartitionLog, cleaner
from raftlog.log.cleaner import clean
from raftlog.log.record_batch import encode_batch, iter_batches

COMPACT = LogConfig(segment_bytes=300, cleanup_policy=("compact",), delete_retention_ms=1000)


def everything(log: PartitionLog) -> list:
    records, offset = [], log.log_start_offset
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        if not data:
            break
        for header, batch_records in iter_batches(data):
            records += [r for r in batch_records if r.offset >= offset]
            offset = header.last_offset + 1
    return records


def fill(log: PartitionLog, writes: list[tuple[bytes, bytes | None]], ts: int = 0) -> None:
    for key, value in writes:
        log.append(encode_batch([(key, value, None, ts)]), leader_epoch=0)


def latest(writes):
    result = {}
    for key, value in writes:
        result[key] = value
    return result


WRITES = (
    [(b"k%d" % (i % 7), b"v%d" % i) for i in range(60)]
    + [(b"k3", None)]
    + [(b"k%d" % (i % 7), b"w%d" % i) for i in range(60, 64)]
)


def test_compaction_keeps_exactly_the_latest_value_per_key_in_order(tmp_path):
    log = PartitionLog(tmp_path, COMPACT)
    fill(log, WRITES, ts=0)
    active_base = log.active.base_offset
    stats = clean(log, now_ms=500)  # tombstones younger than delete.retention.ms stay
    assert stats.records_removed > 0
    kept = everything(log)
    sealed = [r for r in kept if r.offset < active_base]
    assert len({r.key for r in sealed}) == len(sealed)  # one record per key among sealed segments
    offsets = [r.offset for r in kept]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    view = {}
    for r in kept:
        view[r.key] = r.value
    assert view == latest(WRITES)  # reading the compacted log gives the same final state
    assert log.log_end_offset == len(WRITES)  # offsets are kept, never renumbered


def test_tombstones_go_only_after_delete_retention(tmp_path):
    log = PartitionLog(tmp_path, COMPACT)
    fill(log, [(b"a", b"1"), (b"b", b"2"), (b"a", None)] + [(b"c%d" % i, b"x") for i in range(20)], ts=0)
    clean(log, now_ms=500)
    assert any(r.key == b"a" and r.value is None for r in everything(log))
    clean(log, now_ms=5000)
    keys = [r.key for r in everything(log)]
    assert b"a" not in keys and b"b" in keys


@pytest.mark.parametrize("crash_after", ["cleaned", "swap"])
def test_a_crash_in_the_middle_of_the_swap_recovers_cleanly(tmp_path, crash_after):
    log = PartitionLog(tmp_path, COMPACT)
    fill(log, WRITES)
    before = {r.key: r.value for r in everything(log)}
    end = log.log_end_offset
    clean(log, now_ms=0, crash_after=crash_after)
    for segment in log.segments:
        segment.close()
    reopened = PartitionLog(tmp_path, COMPACT)  # finishes or discards the interrupted swap
    assert not list(tmp_path.glob("*.cleaned")) and not list(tmp_path.glob("*.swap"))
    after = {}
    for r in everything(reopened):
        after[r.key] = r.value
    assert after == before and reopened.log_end_offset == end
    clean(reopened, now_ms=0)
    assert {r.key: r.value for r in everything(reopened)} == before


def test_a_pass_runs_only_when_enough_of_the_sealed_log_is_dirty(tmp_path):
    log = PartitionLog(tmp_path, COMPACT)  # min.cleanable.dirty.ratio 0.5
    fill(log, WRITES)
    assert cleaner.dirty_ratio(log) == 1.0 and cleaner.needs_cleaning(log)  # never cleaned
    clean(log, now_ms=0)
    assert cleaner.dirty_ratio(log) == 0.0 and not cleaner.needs_cleaning(log)
    clean_bytes = sum(segment.size for segment in log.segments[:-1])
    sealed_before = len(log.segments) - 1
    while sum(s.size for s in log.segments[sealed_before:-1]) < clean_bytes:  # dirty / (clean + dirty) < 0.5
        assert not cleaner.needs_cleaning(log), "a little new dirt must not trigger a rewrite of everything"
        fill(log, [(b"k1", b"again")])
    assert cleaner.needs_cleaning(log)
    before = {r.key: r.value for r in everything(log)}
    assert clean(log, now_ms=0).records_removed > 0
    assert {r.key: r.value for r in everything(log)} == before


def test_a_pass_is_abandoned_when_the_log_changed_while_it_was_prepared(tmp_path):
    log = PartitionLog(tmp_path, COMPACT)
    fill(log, WRITES)
    plan = cleaner.prepare(log, now_ms=0)  # what the worker thread does
    assert list(tmp_path.glob("*.cleaned"))
    log.truncate_to(log.segments[1].base_offset + 1)  # a follower truncation meanwhile
    after_truncation = [(r.offset, r.key, r.value) for r in everything(log)]
    assert cleaner.commit(log, plan).segments == 0
    assert not list(tmp_path.glob("*.cleaned"))
    assert [(r.offset, r.key, r.value) for r in everything(log)] == after_truncation


def test_concurrent_appends_share_fsyncs(tmp_path):
    log = PartitionLog(tmp_path)
    group = GroupCommit(log)
    flushes = 0
    original = log.begin_flush

    def counting_flush():
        nonlocal flushes
        flushes += 1
        plan = original()
        run = plan.run

        def slow_run():
            time.sleep(0.005)  # a slow disk: appends pile up behind the running fsync
            run()

        plan.run = slow_run
        return plan

    log.begin_flush = counting_flush

    async def appender(i: int) -> None:
        result = log.append(encode_batch([(None, b"x%d" % i, None, 0)]), leader_epoch=0)
        await group.sync(result.last_offset)
        assert group.durable_offset > result.last_offset

    async def run() -> None:
        await asyncio.gather(*(appender(i) for i in range(50)))

    asyncio.run(run())
    assert 1 <= flushes < 25


WRITER = textwrap.dedent("""
    import sys
    from raftlog.log import LogConfig, PartitionLog
    from raftlog.log.record_batch import encode_batch
    log = PartitionLog(sys.argv[1], LogConfig(segment_bytes=4096))
    i = 0
    while True:
        result = log.append(encode_batch([(b"k", b"value-%d" % i, None, i)] * 5), leader_epoch=0)
        log.flush()
        print(result.last_offset, flush=True)  # acknowledged: it is on disk
        i += 1
""")


def test_kill_9_of_a_writer_loses_nothing_it_acknowledged(tmp_path):
    for attempt in range(3):
        directory = tmp_path / f"run{attempt}"
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory)], stdout=subprocess.PIPE, text=True)
        acknowledged = -1
        try:
            deadline = time.monotonic() + 20
            while acknowledged < 200 * (attempt + 1) and time.monotonic() < deadline:
                line = writer.stdout.readline()
                if not line:
                    break
                acknowledged = int(line)
        finally:
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=10)
        assert acknowledged > 0
        log = PartitionLog(directory, LogConfig(segment_bytes=4096))
        records = everything(log)
        assert log.log_end_offset > acknowledged
        assert [r.offset for r in records] == list(range(log.log_end_offset))
        assert all(r.value == b"value-%d" % (r.offset // 5) for r in records)
