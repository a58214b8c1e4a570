"""The bounded cache of segment and index descriptors (raftlog/log/file_cache.py): eviction in
LRU order, transparent reopening, writes after a reopen, dirty handles kept, the bound kept."""

from __future__ import annotations

import errno
import os
import threading

import pytest

from raftlog.log import index as index_module
from raftlog.log import segment as segment_module
from raftlog.log.file_cache import SEGMENT_FILES, FileHandleCache
from raftlog.log.partition_log import PartitionLog
from raftlog.log.record_batch import iter_headers
from raftlog.log.segment import LogSegment
from tests.log.test_partition_log import batch

APPEND = os.O_RDWR | os.O_CREAT | os.O_APPEND


def _fds_of(paths) -> int:
    """Descriptors of this process open on any of paths."""
    wanted = {str(p) for p in paths}
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") in wanted:
                count += 1
        except OSError:
            pass
    return count


@pytest.fixture
def small_segment_cache(monkeypatch):
    """A small cache in place of the process-wide one (what PartitionLog and LogSegment use), so
    files other tests left open do not count."""
    cache = FileHandleCache(4)
    monkeypatch.setattr(segment_module, "SEGMENT_FILES", cache)
    monkeypatch.setattr(index_module, "SEGMENT_FILES", cache)
    assert SEGMENT_FILES is not cache
    return cache


def test_least_recently_used_is_closed_and_reopened_transparently(tmp_path):
    cache = FileHandleCache(2)
    files = [cache.file(tmp_path / f"f{i}", APPEND) for i in range(3)]
    for i, f in enumerate(files):
        with f.fd(write=True) as fd:
            os.write(fd, b"abc%d" % i)
        f.synced_up_to(f.writes)
    assert cache.open_count == 2
    assert [f.is_open for f in files] == [False, True, True]  # the oldest went
    with files[1].fd() as fd:  # now files[2] is the least recently used
        assert os.pread(fd, 4, 0) == b"abc1"
    with files[0].fd() as fd:  # reopened: what it wrote is there
        assert os.pread(fd, 4, 0) == b"abc0"
    assert [f.is_open for f in files] == [True, True, False]
    assert cache.evicted == 2 and cache.opened == 4
    assert _fds_of(f.path for f in files) == 2


def test_writes_after_a_reopen_append_at_the_end(tmp_path):
    cache = FileHandleCache(1)
    a, b = cache.file(tmp_path / "a", APPEND), cache.file(tmp_path / "b", APPEND)
    for round_ in range(3):
        for f in (a, b):
            with f.fd(write=True) as fd:
                os.write(fd, b"%d" % round_)
            f.synced_up_to(f.writes)
            assert cache.open_count == 1
    assert (tmp_path / "a").read_bytes() == b"012" and (tmp_path / "b").read_bytes() == b"012"


def test_a_dirty_handle_is_not_closed_until_its_flush(tmp_path):
    cache = FileHandleCache(1)
    dirty, other = cache.file(tmp_path / "dirty", APPEND), cache.file(tmp_path / "other", APPEND)
    with dirty.fd(write=True) as fd:
        os.write(fd, b"unflushed")
    writes_at_flush = dirty.writes
    with other.fd() as fd:  # the only open one is dirty: the cache goes over its limit, counted
        pass
    assert dirty.is_open and cache.overflows == 1 and cache.open_count == 2
    dirty.synced_up_to(writes_at_flush)  # its flush round ran
    with cache.file(tmp_path / "third", APPEND).fd():
        pass
    assert not dirty.is_open and cache.open_count <= 2


def test_the_flush_that_cleans_handles_over_the_limit_brings_the_cache_back_under_it(tmp_path):
    """Appends to many partitions waiting for their fsyncs side by side hold the cache over its
    limit until their flush rounds; after those, no more than the limit stays open."""
    cache = FileHandleCache(2)
    files = [cache.file(tmp_path / f"f{i}", APPEND) for i in range(5)]
    for f in files:
        with f.fd(write=True) as fd:
            os.write(fd, b"unflushed")
    assert cache.open_count == 5 and cache.overflows == 3
    for f in files:
        f.synced_up_to(f.writes)
    assert cache.open_count == 2 and _fds_of(f.path for f in files) == 2
    assert [f.is_open for f in files] == [False, False, False, True, True]  # the oldest went


def test_a_closed_file_is_never_reopened(tmp_path):
    cache = FileHandleCache(4)
    f = cache.file(tmp_path / "gone", APPEND)
    with f.fd():
        pass
    f.close()
    (tmp_path / "gone").unlink()
    with pytest.raises(OSError) as failure, f.fd():
        pass
    assert failure.value.errno == errno.EBADF
    assert not (tmp_path / "gone").exists()  # not created again


def test_the_limit_holds_across_threads(tmp_path):
    cache = FileHandleCache(3)
    files = [cache.file(tmp_path / f"f{i}", APPEND) for i in range(20)]
    for f in files:
        with f.fd(write=True) as fd:
            os.write(fd, b"x" * 10)
        f.synced_up_to(f.writes)
    errors: list[BaseException] = []

    def reader(offset: int) -> None:
        try:
            for i in range(400):
                with files[(i * 7 + offset) % len(files)].fd() as fd:
                    assert os.pread(fd, 10, 0) == b"x" * 10
                    assert cache.open_count <= 3
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache.peak_open <= 3 and cache.overflows == 0
    assert _fds_of(f.path for f in files) <= 3


def test_many_partition_logs_stay_under_the_limit_and_read_back(tmp_path, small_segment_cache):
    logs = [PartitionLog(tmp_path / f"t-{i}") for i in range(12)]
    for round_ in range(3):
        for i, log in enumerate(logs):
            log.append(batch(f"{i}-{round_}".encode()), leader_epoch=0)
            log.flush()
            assert small_segment_cache.open_count <= 4
    paths = [p for log in logs for p in log.directory.iterdir()]
    assert _fds_of(paths) <= 4
    for i, log in enumerate(logs):
        assert log.log_end_offset == 3
        data = log.read(0, 1 << 20)
        for round_ in range(3):
            assert f"{i}-{round_}".encode() in data
    for log in logs:
        log.close()
    reopened = [PartitionLog(tmp_path / f"t-{i}") for i in range(12)]
    assert all(log.log_end_offset == 3 for log in reopened)
    assert small_segment_cache.open_count <= 4


def test_a_segment_evicted_between_appends_keeps_its_indexes(tmp_path):
    cache = FileHandleCache(1)
    segment = LogSegment(tmp_path, 0, index_interval_bytes=1, created_ms=0.0, files=cache)
    other = cache.file(tmp_path / "other", APPEND)
    log = PartitionLog(tmp_path / "p")  # only to build valid batches with offsets
    for i in range(5):
        result = log.append(batch(b"v%d" % i), leader_epoch=0)
        data = log.read(result.first_offset, 1 << 20)
        segment.append(data, list(iter_headers(bytearray(data))))
        segment.synced_up_to(segment.writes_made())
        with other.fd():  # pushes the segment's files out
            pass
    assert segment.next_offset == 5
    assert [segment.position_of(o) is not None for o in range(5)] == [True] * 5
    assert b"v3" in segment.read(3, 1 << 20)
    assert (tmp_path / "00000000000000000000.index").stat().st_size == 5 * 8  # an entry per batch
    log.close()
