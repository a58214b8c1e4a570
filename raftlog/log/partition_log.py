"""PartitionLog: one partition's data in `<log.dir>/<topic>-<partition>/`.

Segments in offset order; the last one is active. Appends are validated header by header
(length, magic, CRC, offsets) and written whole or not at all; a leader's batches get their
offsets and leader epoch stamped in place, a follower's keep the leader's. Durability is the
caller's next step: `flush()` (sync) or `GroupCommit.sync(offset)` (asyncio: concurrent
appenders share one fdatasync).

Files besides the segments: `leader-epoch-checkpoint`, `recovery-point-offset-checkpoint`
(everything below it was fsynced: recovery validates only from there) and
`log-start-offset-checkpoint`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from raftlog.log.config import LogConfig
from raftlog.log.epoch_cache import LeaderEpochCache
from raftlog.log.errors import CorruptRecordError, LogError, OffsetOutOfRangeError
from raftlog.log.record_batch import BatchHeader, decode_batch, iter_headers, set_base_offset, \
    set_partition_leader_epoch
from raftlog.log.segment import LogSegment, segment_name

log = logging.getLogger(__name__)

RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
MAX_RELATIVE_OFFSET = 2**31 - 1


def _wall_ms() -> float:
    return time.time() * 1000.0


class CorruptionCounter:
    """Corrupt or torn batches found by recovery in this process (exported as a metric)."""

    count = 0


@dataclass(frozen=True)
class AppendResult:
    first_offset: int
    last_offset: int
    headers: list[BatchHeader]
    max_timestamp: int


def _write_number(path: Path, value: int) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"{value}\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_number(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return default


class PartitionLog:
    def __init__(self, directory: str | Path, config: LogConfig | None = None,
                 clock_ms: Callable[[], float] = _wall_ms):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config or LogConfig()
        self._clock_ms = clock_ms
        self.epochs = LeaderEpochCache(self.directory)
        self.segments: list[LogSegment] = []
        self.recovery_point = _read_number(self.directory / RECOVERY_POINT_FILE, 0)
        self.log_start_offset = 0
        self._unflushed_messages = 0
        self._last_flush_ms = clock_ms()
        from raftlog.log.cleaner import finish_interrupted_swaps  # noqa: PLC0415 - cleaner imports us

        finish_interrupted_swaps(self.directory)
        self._load()

    # -- opening and recovery ------------------------------------------------------------------

    def _load(self) -> None:
        bases = sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())
        now = self._clock_ms()
        self.segments = [LogSegment(self.directory, base, self.config.index_interval_bytes, now) for base in bases]
        if not self.segments:
            start = _read_number(self.directory / LOG_START_FILE, 0)
            self.segments = [LogSegment(self.directory, start, self.config.index_interval_bytes, now)]
        for i, segment in enumerate(self.segments):
            if not self._recover_segment(segment, is_last=i == len(self.segments) - 1):
                CorruptionCounter.count += 1
                log.error("%s: corrupt or torn data; the log now ends at offset %d", segment.log_path,
                          segment.next_offset)
                self._drop_segments_after(i)
                break
        self.log_start_offset = max(self.segments[0].base_offset,
                                    _read_number(self.directory / LOG_START_FILE, self.segments[0].base_offset))
        self.epochs.truncate_from_end(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._checkpoint_recovery_point()

    def _recover_segment(self, segment: LogSegment, is_last: bool) -> bool:
        """Sealed segments below the recovery point keep their indexes (rebuilt if damaged);
        the rest are re-validated batch by batch and cut at the first bad one."""
        next_base = self._next_base(segment)
        if is_last or next_base is None or next_base > self.recovery_point:
            return segment.recover(validate=True)
        if not segment.load_indexes():
            log.info("%s: rebuilding indexes", segment.log_path)
            segment.recover(validate=False)
        return True

    def _next_base(self, segment: LogSegment) -> int | None:
        i = self.segments.index(segment)
        return self.segments[i + 1].base_offset if i + 1 < len(self.segments) else None

    def _drop_segments_after(self, index: int) -> None:
        for segment in self.segments[index + 1:]:
            log.warning("%s: dropped, it follows a corrupt batch", segment.log_path)
            segment.delete()
        del self.segments[index + 1:]

    # -- state ---------------------------------------------------------------------------------

    @property
    def active(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.active.next_offset

    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def latest_epoch(self) -> int:
        return self.epochs.latest_epoch

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self.epochs.end_offset_for(epoch, self.log_end_offset)

    # -- appending -----------------------------------------------------------------------------

    def append(self, records: bytes, leader_epoch: int | None = None) -> AppendResult:
        """Appends one or more batches.

        leader_epoch given: this node leads; offsets are assigned from the log end and the
        epoch is stamped in every batch. None: a follower copying the leader; offsets and
        epochs are kept and must continue this log.
        """
        buf = bytearray(records)
        headers = list(iter_headers(buf))
        if not headers:
            raise CorruptRecordError("no record batch in the request", reason="INVALID_RECORD")
        if len(buf) > self.config.max_message_bytes and leader_epoch is not None:
            raise LogError(f"{len(buf)} bytes exceed max.message.bytes={self.config.max_message_bytes}",
                           "MESSAGE_TOO_LARGE")
        headers = self._assign(buf, headers, leader_epoch)
        self._maybe_roll(len(buf), headers[-1][1].last_offset)
        self.active.append(buf, headers)
        self._unflushed_messages += sum(h.record_count for _, h in headers)
        return AppendResult(headers[0][1].base_offset, headers[-1][1].last_offset, [h for _, h in headers],
                            max(h.max_timestamp for _, h in headers))

    def _assign(self, buf: bytearray, headers: list[tuple[int, BatchHeader]],
                leader_epoch: int | None) -> list[tuple[int, BatchHeader]]:
        next_offset = self.log_end_offset
        assigned = []
        for position, header in headers:
            if leader_epoch is not None:
                if header.is_control:
                    raise CorruptRecordError("clients may not write control batches", reason="INVALID_RECORD")
                set_base_offset(buf, position, next_offset)
                set_partition_leader_epoch(buf, position, leader_epoch)
                header = _replace_header(header, next_offset, leader_epoch)
                self.epochs.assign(leader_epoch, next_offset)
            else:
                if header.base_offset < next_offset:
                    raise CorruptRecordError(
                        f"batch at offset {header.base_offset} does not continue the log at {next_offset}",
                        reason="INVALID_RECORD")
                self.epochs.assign(header.partition_leader_epoch, header.base_offset)
            assigned.append((position, header))
            next_offset = header.next_offset
        return assigned

    def _maybe_roll(self, incoming_bytes: int, last_offset: int) -> None:
        active = self.active
        if active.size == 0:
            return
        too_big = active.size + incoming_bytes > self.config.segment_bytes
        too_old = self._clock_ms() - active.created_ms > self.config.segment_ms
        too_far = last_offset - active.base_offset > MAX_RELATIVE_OFFSET
        if too_big or too_old or too_far:
            self.roll()

    def roll(self) -> LogSegment:
        """Seals the active segment (fsynced) and starts a new one at the log end."""
        sealed = self.active
        sealed.flush()
        segment = LogSegment(self.directory, self.log_end_offset, self.config.index_interval_bytes, self._clock_ms())
        self.segments.append(segment)
        self.recovery_point = max(self.recovery_point, sealed.next_offset)
        self._checkpoint_recovery_point()
        return segment

    # -- durability ----------------------------------------------------------------------------

    def needs_flush(self) -> bool:
        if self._unflushed_messages == 0:
            return False
        if self._unflushed_messages >= self.config.flush_messages:
            return True
        return self.config.flush_ms > 0 and self._clock_ms() - self._last_flush_ms >= self.config.flush_ms

    def flush(self) -> int:
        """fdatasync of the active segment; returns the log end offset that is now durable."""
        end = self.log_end_offset
        self._unflushed_messages = 0
        self.active.flush()
        self._last_flush_ms = self._clock_ms()
        self.recovery_point = max(self.recovery_point, end)
        return end

    def _checkpoint_recovery_point(self) -> None:
        _write_number(self.directory / RECOVERY_POINT_FILE, self.recovery_point)

    # -- reading -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Whole batches starting with the one that holds offset (at least one batch)."""
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]")
        for segment in self._segments_from(offset):
            data = segment.read(offset, max_bytes, max_offset)
            if data:
                return data
        return b""

    def _segments_from(self, offset: int) -> list[LogSegment]:
        for i, segment in enumerate(self.segments):
            nxt = self.segments[i + 1].base_offset if i + 1 < len(self.segments) else None
            if nxt is None or offset < nxt:
                return self.segments[i:]
        return []

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= timestamp_ms, or None."""
        for segment in self.segments:
            if segment.max_timestamp < timestamp_ms:
                continue
            start = segment.offset_index.lookup(segment.base_offset + segment.time_index.lookup(timestamp_ms))
            for position, header in segment.scan(start):
                if header.max_timestamp >= timestamp_ms:
                    _, records = decode_batch(segment.pread(position, header.size))
                    for record in records:
                        if record.timestamp >= timestamp_ms and record.offset >= self.log_start_offset:
                            return record.offset, record.timestamp
        return None

    def batch_headers(self, from_offset: int = 0):
        """(header) of every batch from the one holding from_offset (for producer-state rebuilds)."""
        for segment in self._segments_from(max(from_offset, self.log_start_offset)):
            for _, header in segment.scan(0):
                if header.last_offset >= from_offset:
                    yield header

    # -- truncation, retention -----------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Removes every batch whose last offset is >= offset (replication divergence), and the
        epochs that start there (at the log end: epochs that hold no record yet)."""
        if offset >= self.log_end_offset:
            self.epochs.truncate_from_end(offset)
            return
        if offset < self.log_start_offset:
            raise OffsetOutOfRangeError(f"cannot truncate below the log start {self.log_start_offset}")
        while len(self.segments) > 1 and self.active.base_offset >= offset:
            self.segments.pop().delete()
        self.active.truncate_to(offset)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._checkpoint_recovery_point()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        for segment in self.segments:
            segment.delete()
        self.segments = [LogSegment(self.directory, offset, self.config.index_interval_bytes, self._clock_ms())]
        self.log_start_offset = offset
        self.epochs.clear()
        self.recovery_point = offset
        self._checkpoint_recovery_point()
        _write_number(self.directory / LOG_START_FILE, offset)

    def delete_records(self, offset: int) -> int:
        """Advances the log start offset to offset (Kafka's DeleteRecords); returns the new start."""
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(f"offset {offset} is past the log end {self.log_end_offset}")
        if offset <= self.log_start_offset:
            return self.log_start_offset
        self.log_start_offset = offset
        _write_number(self.directory / LOG_START_FILE, offset)
        while len(self.segments) > 1 and self.segments[1].base_offset <= offset:
            self.segments.pop(0).delete()
        self.epochs.truncate_from_start(offset)
        return offset

    def apply_retention(self, now_ms: float | None = None, high_watermark: int | None = None) -> int:
        """Deletes whole sealed segments past retention.ms / retention.bytes; returns how many.

        Never the active segment, and (when given) never a segment holding offsets at or
        above the high watermark.
        """
        if not self.config.delete:
            return 0
        now_ms = self._clock_ms() if now_ms is None else now_ms
        deleted = 0
        total = self.size_bytes()
        while len(self.segments) > 1:
            oldest = self.segments[0]
            if high_watermark is not None and self.segments[1].base_offset > high_watermark:
                break
            expired = self.config.retention_ms >= 0 and 0 <= oldest.max_timestamp < now_ms - self.config.retention_ms
            oversized = self.config.retention_bytes >= 0 and total - oldest.size >= self.config.retention_bytes
            if not (expired or oversized):
                break
            total -= oldest.size
            self.segments.pop(0).delete()
            deleted += 1
            self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        if deleted:
            _write_number(self.directory / LOG_START_FILE, self.log_start_offset)
            self.epochs.truncate_from_start(self.log_start_offset)
        return deleted

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """A clean close: flushed, so the next open validates nothing."""
        self.flush()
        self._checkpoint_recovery_point()
        for segment in self.segments:
            segment.close()

    def delete(self) -> None:
        for segment in self.segments:
            segment.delete()
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()


def _replace_header(header: BatchHeader, base_offset: int, epoch: int) -> BatchHeader:
    return BatchHeader(base_offset, header.batch_length, epoch, header.magic, header.crc, header.attributes,
                       header.last_offset_delta, header.base_timestamp, header.max_timestamp, header.producer_id,
                       header.producer_epoch, header.base_sequence, header.record_count)


def partition_directory(log_dir: str | Path, topic: str, partition: int) -> Path:
    return Path(log_dir) / f"{topic}-{partition}"


class GroupCommit:
    """asyncio: appenders await sync(offset); one fdatasync in a worker thread serves everyone
    whose data was written before it started."""

    def __init__(self, partition_log: PartitionLog):
        self._log = partition_log
        self.durable_offset = partition_log.log_end_offset
        self._running: asyncio.Task | None = None

    async def sync(self, last_offset: int) -> None:
        while self.durable_offset <= last_offset:
            if self._running is None:
                self._running = asyncio.get_running_loop().create_task(self._flush())
            await asyncio.shield(self._running)

    async def _flush(self) -> None:
        try:
            durable = await asyncio.to_thread(self._log.flush)
            self.durable_offset = max(self.durable_offset, durable)
        finally:
            self._running = None


__all__ = ["AppendResult", "GroupCommit", "PartitionLog", "partition_directory", "segment_name"]
