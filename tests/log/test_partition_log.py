"""The segmented partition log: appends, reads, indexes, epochs, bad input, recovery, retention."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from raftlog.log import LogConfig, PartitionLog
from raftlog.log.errors import CorruptRecordError, LogError, OffsetOutOfRangeError
from raftlog.log.record_batch import encode_batch, iter_batches


def batch(*values: bytes, ts: int = 1000, key: bytes | None = None) -> bytes:
    return encode_batch([(key, v, None, ts) for v in values])


def read_values(log: PartitionLog, start: int = 0) -> list[tuple[int, bytes]]:
    out, offset = [], start
    while offset < log.log_end_offset:
        data = log.read(offset, 1 << 20)
        if not data:
            break
        for _, records in iter_batches(data):
            out += [(r.offset, r.value) for r in records if r.offset >= offset]
        offset = out[-1][0] + 1
    return out


class Clock:
    def __init__(self, now_ms: float = 0):
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms


def test_offsets_rolls_and_reads_across_segments(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=400, index_interval_bytes=100))
    for i in range(30):
        result = log.append(batch(b"v%d" % i, b"w%d" % i), leader_epoch=0)
        assert result.first_offset == 2 * i and result.last_offset == 2 * i + 1
    assert len(log.segments) > 3
    assert [p.name for p in sorted(tmp_path.glob("*.log"))][0] == "00000000000000000000.log"
    assert read_values(log) == [(i, b"%s%d" % (b"v" if i % 2 == 0 else b"w", i // 2)) for i in range(60)]
    # a read from the middle of a batch starts with that batch; at least one batch even if too big
    data = log.read(31, 1)
    [(header, _)] = list(iter_batches(data))
    assert header.base_offset == 30
    assert log.read(60, 100) == b""
    with pytest.raises(OffsetOutOfRangeError):
        log.read(61, 100)


def test_bad_batches_leave_the_log_unchanged(tmp_path):
    log = PartitionLog(tmp_path)
    log.append(batch(b"ok"), leader_epoch=0)
    good = batch(b"fine")
    broken = bytearray(good)
    broken[-1] ^= 0xFF
    size = log.size_bytes()
    for bad in (bytes(broken), good[:-2], good + bytes(broken), b"", b"\x00" * 70):
        with pytest.raises(LogError):
            log.append(bad, leader_epoch=0)
        assert (log.log_end_offset, log.size_bytes()) == (1, size)
    follower = PartitionLog(tmp_path / "f")
    follower.append(encode_batch([(None, b"x", None, 1)], base_offset=0, partition_leader_epoch=0))
    with pytest.raises(CorruptRecordError):  # a follower batch must continue the log
        follower.append(encode_batch([(None, b"x", None, 1)], base_offset=0, partition_leader_epoch=0))


def test_leader_epochs_and_truncation(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=300))
    for epoch, count in ((0, 5), (2, 5), (5, 5)):
        for _ in range(count):
            log.append(batch(b"x"), leader_epoch=epoch)
    assert log.epochs.entries == [(0, 0), (2, 5), (5, 10)]
    assert log.end_offset_for_epoch(2) == (2, 10)
    assert log.end_offset_for_epoch(3) == (2, 10)
    assert log.end_offset_for_epoch(5) == (5, 15)
    log.truncate_to(7)
    assert log.log_end_offset == 7 and log.epochs.entries == [(0, 0), (2, 5)]
    reopened = PartitionLog(tmp_path, LogConfig(segment_bytes=300))
    assert reopened.log_end_offset == 7 and reopened.epochs.entries == [(0, 0), (2, 5)]
    assert [o for o, _ in read_values(reopened)] == list(range(7))
    # A leadership that wrote nothing leaves an epoch at the log end; truncating there drops it.
    reopened.epochs.assign(6, 7)
    reopened.truncate_to(7)
    assert reopened.log_end_offset == 7 and reopened.latest_epoch() == 2


def write_log(directory: Path, batches: int) -> tuple[list[int], int]:
    """Appends fsynced batches; returns the file size after each and the last batch's start."""
    log = PartitionLog(directory, LogConfig(segment_bytes=1 << 30))
    sizes = []
    for i in range(batches):
        log.append(encode_batch([(b"k", b"value-%d" % i, None, i)] * 3), leader_epoch=1)
        log.flush()
        sizes.append(log.size_bytes())
    # no close(): the recovery point stays at 0, as after a crash
    for segment in log.segments:
        segment.close()
    return sizes, sizes[-2]


def test_a_cut_anywhere_in_the_last_batch_keeps_every_earlier_batch(tmp_path):
    source = tmp_path / "source"
    sizes, last_start = write_log(source, 5)
    segment_name = "00000000000000000000.log"
    for cut in range(last_start, sizes[-1] + 1):
        copy = tmp_path / f"cut-{cut}"
        shutil.copytree(source, copy)
        with open(copy / segment_name, "r+b") as f:
            f.truncate(cut)
        log = PartitionLog(copy)
        expected_end = 15 if cut == sizes[-1] else 12
        assert log.log_end_offset == expected_end, cut
        assert [o for o, _ in read_values(log)] == list(range(expected_end))
        log.append(batch(b"after"), leader_epoch=2)  # the log is usable after recovery
        shutil.rmtree(copy)


def test_random_cuts_and_garbage_never_serve_invalid_data(tmp_path):
    import random

    rng = random.Random(3)
    source = tmp_path / "source"
    sizes, _ = write_log(source, 20)
    for trial in range(40):
        copy = tmp_path / f"t{trial}"
        shutil.copytree(source, copy)
        cut = rng.randrange(sizes[-1])
        with open(copy / "00000000000000000000.log", "r+b") as f:
            f.truncate(cut)
            if rng.random() < 0.5:
                f.seek(cut)
                f.write(rng.randbytes(rng.randrange(1, 200)))
        log = PartitionLog(copy)
        survivors = sum(1 for s in sizes if s <= cut)
        assert log.log_end_offset == 3 * survivors
        assert read_values(log) == [(o, b"value-%d" % (o // 3)) for o in range(3 * survivors)]
        shutil.rmtree(copy)


def test_indexes_are_rebuilt_when_missing_or_damaged(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=500, index_interval_bytes=64))
    for i in range(40):
        log.append(batch(b"v%d" % i), leader_epoch=0)
    log.close()
    sealed = sorted(tmp_path.glob("*.index"))[0]
    sealed.write_bytes(b"\x00\x00\x00\x05")  # torn entry
    sorted(tmp_path.glob("*.timeindex"))[1].unlink()
    reopened = PartitionLog(tmp_path, LogConfig(segment_bytes=500, index_interval_bytes=64))
    assert read_values(reopened) == [(i, b"v%d" % i) for i in range(40)]
    assert len(sealed.read_bytes()) % 8 == 0


def test_retention_by_time_and_size_never_removes_the_active_segment(tmp_path):
    clock = Clock(10_000)
    config = LogConfig(segment_bytes=200, retention_ms=5_000, retention_bytes=-1)
    log = PartitionLog(tmp_path, config, clock_ms=clock)
    for i in range(20):
        log.append(batch(b"x" * 20, ts=1000 * i), leader_epoch=0)
    segments_before = len(log.segments)
    clock.now_ms = 15_500  # retention.ms keeps timestamps >= 10_500
    deleted = log.apply_retention()
    assert deleted > 0 and len(log.segments) == segments_before - deleted
    assert all(s.max_timestamp >= 10_500 for s in log.segments[:-1])
    assert log.log_start_offset == log.segments[0].base_offset
    clock.now_ms = 10**9
    log.apply_retention()
    assert len(log.segments) == 1 and log.log_end_offset == 20  # only the active segment is left
    with pytest.raises(OffsetOutOfRangeError):
        log.read(0, 100)


def test_retention_bytes_and_delete_records(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=200, retention_ms=-1, retention_bytes=400))
    for _ in range(30):
        log.append(batch(b"y" * 20), leader_epoch=0)
    log.apply_retention()
    assert log.size_bytes() - log.active.size < 400
    start = log.delete_records(log.log_end_offset - 2)
    assert start == 28 and log.log_start_offset == 28
    reopened = PartitionLog(tmp_path, LogConfig(segment_bytes=200))
    assert reopened.log_start_offset == 28 and [o for o, _ in read_values(reopened, 28)] == [28, 29]


def test_offset_for_timestamp(tmp_path):
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=300))
    for i in range(10):
        log.append(encode_batch([(None, b"a", None, 100 * i), (None, b"b", None, 100 * i + 50)]), leader_epoch=0)
    assert log.offset_for_timestamp(0) == (0, 0)
    assert log.offset_for_timestamp(420) == (9, 450)
    assert log.offset_for_timestamp(451) == (10, 500)
    assert log.offset_for_timestamp(10_000) is None


def test_the_recovery_point_checkpoint_is_rewritten_by_interval_roll_or_close_not_every_flush(tmp_path):
    """A crash-safe rewrite of the checkpoint per flush round cost every durable append a temp file,
    an fsync, a rename and a directory fsync; it lags now, but never claims more than is fsynced."""
    from raftlog.limits import RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
    from raftlog.log.partition_log import RECOVERY_POINT_FILE, write_checkpoints

    clock = Clock(10_000)
    log = PartitionLog(tmp_path, LogConfig(segment_bytes=1 << 20), clock_ms=clock)
    checkpoint = tmp_path / RECOVERY_POINT_FILE
    log.append(batch(b"a"), leader_epoch=0)
    clock.now_ms += RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
    log.flush()
    written = checkpoint.stat().st_mtime_ns, int(checkpoint.read_text())
    for value in (b"b", b"c", b"d"):  # rounds within the interval, through the group-commit path
        log.append(batch(value), leader_epoch=0)
        plan = log.begin_flush()
        plan.run()
        log.end_flush(plan)
        assert not log.take_checkpoints(), "a round within the interval queued the recovery point"
    assert (checkpoint.stat().st_mtime_ns, int(checkpoint.read_text())) == written
    assert written[1] <= log.flushed_offset  # lagging, never ahead of the disk
    clock.now_ms += RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
    log.append(batch(b"e"), leader_epoch=0)
    plan = log.begin_flush()
    plan.run()
    log.end_flush(plan)
    files = log.take_checkpoints()
    assert [path.name for path, _ in files] == [RECOVERY_POINT_FILE]
    write_checkpoints(files)
    assert int(checkpoint.read_text()) == 5
    log.append(batch(b"f"), leader_epoch=0)
    log.close()
    assert int(checkpoint.read_text()) == log.log_end_offset == 6


def test_a_log_made_in_a_new_directory_is_the_log_an_empty_directory_opens_to(tmp_path):
    """A new partition's log skips recovery (nothing on disk): it must start, write, checkpoint
    and reopen exactly as the full open of an empty directory does."""
    fresh_dir, empty_dir = tmp_path / "new" / "t-0", tmp_path / "empty"
    empty_dir.mkdir()
    logs = [PartitionLog(fresh_dir, clock_ms=Clock()), PartitionLog(empty_dir, clock_ms=Clock())]
    opened = [(log.log_start_offset, log.log_end_offset, log.recovery_point, log.flushed_offset) for log in logs]
    assert opened[0] == opened[1] == (0, 0, 0, 0)
    assert [p.name for p in fresh_dir.iterdir()] == ["00000000000000000000.log"]  # no checkpoint written yet
    for log in logs:
        log.append(batch(b"a", b"b"), leader_epoch=3)
        log.append(batch(b"c"), leader_epoch=5)
        log.flush()
        log.close()
    files = [sorted(p.name for p in d.iterdir()) for d in (fresh_dir, empty_dir)]
    assert files[0] == files[1] and "leader-epoch-checkpoint" in files[0]
    for directory in (fresh_dir, empty_dir):
        reopened = PartitionLog(directory)
        assert read_values(reopened) == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert reopened.epochs.entries == [(3, 0), (5, 2)]
        assert reopened.recovery_point == 3
        reopened.close()
