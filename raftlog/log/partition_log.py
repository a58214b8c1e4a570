"""PartitionLog: one partition's data in `<log.dir>/<topic>-<partition>/`.

Segments in offset order; the last one is active. Appends are validated header by header
(length, magic, CRC, offsets) and written whole or not at all; a leader's batches get their
offsets and leader epoch stamped in place, a follower's keep the leader's. Durability is the
caller's next step: `flush()` (sync) or `GroupCommit.sync(offset)` (asyncio: concurrent
appenders share one fdatasync).

Files besides the segments: `leader-epoch-checkpoint`, `recovery-point-offset-checkpoint`
(everything below it was fsynced: recovery validates only from there) and
`log-start-offset-checkpoint`, all written with raftlog.durable_file. State changes on the
owning thread only queue the new contents (`take_checkpoints`); a flush writes them, in that
order, after the data they describe is fsynced, so a checkpoint never claims more than the disk
holds. Recovery re-derives the leader epochs of the batches it validates, so an epoch
checkpoint that a crash kept from being written loses nothing.

Failures: an OSError from any write, truncation or fsync takes the log out of service for good
(`failure`, KAFKA_STORAGE_ERROR on every later call, `on_failure` told once). Nothing is retried:
after a failed fsync the kernel may have dropped the dirty pages (PostgreSQL's "fsyncgate"), and
after a short write the file holds torn bytes that later appends would land behind. Recovery on
the next open cuts the log at its last valid batch.

Threads: `GroupCommit` runs fsyncs over duplicated file descriptors on a worker thread (or on
the loop, when `sync_policy` says it has time to spare for a single fdatasync), and applies
their outcome (flushed offset, recovery point) back on the owning thread; every other method
runs on the owning thread (the broker's event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from raftlog.durable_file import fsync_directory, write_durable
from raftlog.limits import RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
from raftlog.log import sync_policy
from raftlog.log.cleaner import finish_interrupted_swaps
from raftlog.log.config import LogConfig
from raftlog.log.epoch_cache import LeaderEpochCache
from raftlog.log.errors import (
    CorruptLogError,
    CorruptRecordError,
    LogError,
    OffsetOutOfRangeError,
)
from raftlog.log.record_batch import (
    BatchHeader,
    decode_batch,
    iter_headers,
    read_header,
    set_base_offset,
    set_partition_leader_epoch,
)
from raftlog.log.segment import LogSegment, segment_name

log = logging.getLogger(__name__)

RECOVERY_POINT_FILE = "recovery-point-offset-checkpoint"
LOG_START_FILE = "log-start-offset-checkpoint"
MAX_RELATIVE_OFFSET = 2**31 - 1


def _wall_ms() -> float:
    return time.time() * 1000.0


class CorruptionCounter:
    """Corrupt or torn data found in this process (exported as metrics): `count` by recovery,
    `scrubbed` by the scrubber, `read` by verified reads; `repaired` replicas cut before a
    corrupt batch that have fetched past it again from the leader."""

    count = 0
    scrubbed = 0
    read = 0
    repaired = 0


@dataclass(frozen=True)
class AppendResult:
    first_offset: int
    last_offset: int
    headers: list[BatchHeader]
    max_timestamp: int


@dataclass
class FlushPlan:
    """One fsync round, prepared on the owning thread (`begin_flush`), run on a worker thread
    or the loop (`run`, where sync_policy says), applied on the owning thread
    (`PartitionLog.end_flush`)."""

    end_offset: int  # everything below it was written before the plan was made
    generation: int  # the log's truncation count then: a truncation meanwhile voids the plan
    sealed: list  # segments sealed since the last round: they become part of the recovery point
    fds: list[int] = field(default_factory=list)  # duplicates: a segment closed meanwhile cannot break the fsync
    # (segment, its writes when the plan was made): once fsynced, the file cache may close them
    writes: list[tuple[LogSegment, int]] = field(default_factory=list)
    directory: Path | None = None  # fsynced when segments were created or sealed since the last round

    def run(self) -> None:
        try:
            for fd in self.fds:
                os.fdatasync(fd)
            if self.directory is not None:
                fsync_directory(self.directory)
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds = []


def write_checkpoints(files: list[tuple[Path, bytes]]) -> None:
    """Writes queued checkpoint files in order, each crash-safely (worker thread or startup)."""
    for path, data in files:
        write_durable(path, data)


def _read_number(path: Path, default: int) -> int:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return default


class PartitionLog:
    def __init__(
        self, directory: str | Path, config: LogConfig | None = None, clock_ms: Callable[[], float] = _wall_ms
    ):
        self.directory = Path(directory)
        # A new partition's log starts with no file to write durably: every checkpoint's default
        # (recovery point 0, log start 0, no epochs) is what its missing file reads as, and the
        # first flush round fsyncs the directory with the data. Creating a topic of thousands of
        # partitions thus costs no fsync per replica (it cost three crash-safe file writes each).
        fresh = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config or LogConfig()
        self._clock_ms = clock_ms
        self.epochs = LeaderEpochCache(self.directory, load=not fresh)
        self.segments: list[LogSegment] = []
        self.recovery_point = 0 if fresh else _read_number(self.directory / RECOVERY_POINT_FILE, 0)
        self.log_start_offset = 0
        # Everything below flushed_offset is fsynced. Only the owning thread moves it (end_flush),
        # so "how much is unflushed" is a difference of offsets, never a counter two threads touch.
        self.flushed_offset = 0
        self._last_flush_ms = clock_ms()
        self._recovery_point_written_ms = clock_ms()
        self._recovery_point_queued = -1  # the value last queued for the checkpoint file
        self._generation = 0  # truncations so far: a flush planned before one must not count after it
        self._unflushed_sealed: list[LogSegment] = []  # sealed by roll, fsynced by the next flush round
        self._directory_dirty = True  # a segment file was created since the directory was last fsynced
        self._pending_files: dict[str, bytes] = {}  # checkpoint name -> content, written by the next round
        self.failure: LogError | None = None
        # Where recovery cut data that the recovery point said was fsynced (corruption, not a
        # torn tail): this replica lost records it may have reported to the leader.
        self.durable_data_lost_at: int | None = None
        self.on_failure: Callable[[PartitionLog, LogError], None] | None = None

        # Opening runs on the caller's thread (startup or a worker thread): its writes are synchronous.
        with self.failing_on_os_error("open"):
            if fresh:  # nothing on disk to find, recover or read: half the CPU of opening a log
                self.segments = [LogSegment(self.directory, 0, self.config.index_interval_bytes, self._clock_ms())]
                assert self.log_end_offset == self.recovery_point == self.log_start_offset == 0, (
                    f"{self.directory}: a new log must start empty at offset 0"
                )
                assert not self._pending_files and not self.epochs.dirty, "a new log has nothing to checkpoint"
                self._recovery_point_queued = 0  # what its missing checkpoint file reads as
                return
            finish_interrupted_swaps(self.directory)
            self._load()
            self.flushed_offset = self.log_end_offset
            write_checkpoints(self.take_checkpoints())

    # -- opening and recovery ------------------------------------------------------------------

    def _load(self) -> None:
        bases = sorted(int(p.stem) for p in self.directory.glob("*.log") if p.stem.isdigit())
        now = self._clock_ms()
        self.segments = [LogSegment(self.directory, base, self.config.index_interval_bytes, now) for base in bases]
        if not self.segments:
            start = _read_number(self.directory / LOG_START_FILE, 0)
            self.segments = [LogSegment(self.directory, start, self.config.index_interval_bytes, now)]
        durable_end = self.recovery_point
        for i, segment in enumerate(self.segments):
            if not self._recover_segment(segment, is_last=i == len(self.segments) - 1):
                CorruptionCounter.count += 1
                log.error(
                    "%s: corrupt or torn data; the log now ends at offset %d", segment.log_path, segment.next_offset
                )
                if segment.next_offset < durable_end:
                    self.durable_data_lost_at = segment.next_offset
                self._drop_segments_after(i)
                break
        self.log_start_offset = max(
            self.segments[0].base_offset, _read_number(self.directory / LOG_START_FILE, self.segments[0].base_offset)
        )
        if self.epochs.damaged:
            log.warning("%s: unreadable %s, rebuilt from the batches", self.directory, self.epochs.path.name)
            self.epochs.entries = []  # recovery assigned the tail's epochs already: start over, in order
            for segment in self.segments:
                for _, header in segment.scan(0):
                    self.epochs.assign(header.partition_leader_epoch, header.base_offset)
        self.epochs.truncate_from_end(self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._checkpoint_recovery_point()

    def _recover_segment(self, segment: LogSegment, is_last: bool) -> bool:
        """Sealed segments below the recovery point keep their indexes (rebuilt if damaged);
        the rest are re-validated batch by batch and cut at the first bad one, and their
        batches' leader epochs go into the epoch cache (its checkpoint may be older than they)."""
        next_base = self._next_base(segment)
        if is_last or next_base is None or next_base > self.recovery_point:
            intact = segment.recover(validate=True)
            for _, header in segment.scan(0):
                self.epochs.assign(header.partition_leader_epoch, header.base_offset)
            return intact
        try:
            if segment.load_indexes():
                return True
        except CorruptRecordError as exc:  # the tail it scans is unreadable: validate it all
            log.warning("%s: %s; validating the whole segment", segment.log_path, exc.message)
            return segment.recover(validate=True)
        log.info("%s: rebuilding indexes", segment.log_path)
        return segment.recover(validate=False)  # False: a batch length runs past the file (cut there)

    def _next_base(self, segment: LogSegment) -> int | None:
        i = self.segments.index(segment)
        return self.segments[i + 1].base_offset if i + 1 < len(self.segments) else None

    def _drop_segments_after(self, index: int) -> None:
        for segment in self.segments[index + 1 :]:
            log.warning("%s: dropped, it follows a corrupt batch", segment.log_path)
            segment.delete()
        del self.segments[index + 1 :]

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

    # -- failure -------------------------------------------------------------------------------

    def check_online(self) -> None:
        if self.failure is not None:
            raise LogError(f"{self.directory} is out of service after a failed write: {self.failure.message}")

    def fail(self, exc: OSError, action: str) -> LogError:
        """Takes the log out of service (once); returns the error to raise."""
        if self.failure is None:
            self.failure = LogError(f"{action} in {self.directory} failed: {exc}")
            log.error("%s: %s failed, log out of service until restart: %s", self.directory, action, exc)
            if self.on_failure is not None:
                self.on_failure(self, self.failure)
        return LogError(f"{self.directory} is out of service after a failed write: {self.failure.message}")

    def mark_offline(self, reason: str) -> None:
        """Out of service because of a failure elsewhere (another log of its log dir)."""
        if self.failure is None:
            self.failure = LogError(reason)
            log.error("%s: out of service until restart: %s", self.directory, reason)

    @contextlib.contextmanager
    def failing_on_os_error(self, action: str) -> Iterator[None]:
        """Every write goes through here: refused once the log is out of service, and the
        first OSError takes it out of service."""
        self.check_online()
        try:
            yield
        except OSError as exc:
            raise self.fail(exc, action) from exc

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
            raise LogError(
                f"{len(buf)} bytes exceed max.message.bytes={self.config.max_message_bytes}", "MESSAGE_TOO_LARGE"
            )
        self.check_online()
        headers = self._assign(buf, headers, leader_epoch)
        with self.failing_on_os_error("append"):
            self._maybe_roll(len(buf), headers[-1][1].last_offset)
            self.active.append(buf, headers)
        return AppendResult(
            headers[0][1].base_offset,
            headers[-1][1].last_offset,
            [h for _, h in headers],
            max(h.max_timestamp for _, h in headers),
        )

    def _assign(
        self, buf: bytearray, headers: list[tuple[int, BatchHeader]], leader_epoch: int | None
    ) -> list[tuple[int, BatchHeader]]:
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
                        reason="INVALID_RECORD",
                    )
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
        """Seals the active segment and starts a new one at the log end. No fsync here (this
        runs inside an append on the event loop): the next flush round fsyncs the sealed
        segment, and only then does the recovery point move past it."""
        with self.failing_on_os_error("roll"):
            sealed = self.active
            sealed.offset_index.close()  # written out to the OS; fsynced with the segment
            sealed.time_index.close()
            segment = LogSegment(
                self.directory, self.log_end_offset, self.config.index_interval_bytes, self._clock_ms()
            )
        self.segments.append(segment)
        self._unflushed_sealed.append(sealed)
        self._directory_dirty = True
        return segment

    # -- durability ----------------------------------------------------------------------------

    def needs_flush(self) -> bool:
        unflushed = self.log_end_offset - self.flushed_offset
        if unflushed <= 0:
            return bool(self._unflushed_sealed)
        if unflushed >= self.config.flush_messages:
            return True
        return self.config.flush_ms > 0 and self._clock_ms() - self._last_flush_ms >= self.config.flush_ms

    def begin_flush(self) -> FlushPlan:
        """A flush round of everything written so far (owning thread); run it anywhere, then
        hand it to end_flush on the owning thread."""
        with self.failing_on_os_error("flush"):
            plan = FlushPlan(self.log_end_offset, self._generation, list(self._unflushed_sealed))
            self._unflushed_sealed = []
            for segment in plan.sealed:
                plan.writes.append((segment, segment.writes_made()))
                plan.fds += segment.duplicate_fds(with_indexes=True)
            # The active segment's indexes are not fsynced: recovery always rebuilds them.
            plan.writes.append((self.active, self.active.writes_made()))
            plan.fds += self.active.duplicate_fds(with_indexes=False)
            if self._directory_dirty or plan.sealed:
                plan.directory, self._directory_dirty = self.directory, False
        return plan

    def end_flush(self, plan: FlushPlan, checkpoint: bool = False) -> int:
        """Applies a completed flush round (owning thread); returns the flushed offset.

        The recovery point moves with every round, but its checkpoint is rewritten only when
        segments were sealed, when `checkpoint` asks, or once RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
        has passed (Kafka's log.flush.offset.checkpoint.interval.ms): a crash-safe file write per
        round would cost every durable append a temp file, an fsync, a rename and a directory fsync.
        A checkpoint that lags only makes recovery re-validate more; it never claims too much."""
        now_ms = self._clock_ms()
        self._last_flush_ms = now_ms
        for segment, writes in plan.writes:
            segment.synced_up_to(writes)
        if plan.generation == self._generation:
            assert plan.end_offset <= self.log_end_offset, (
                f"flushed up to {plan.end_offset} beyond the log end {self.log_end_offset} without a truncation"
            )
            self.flushed_offset = max(self.flushed_offset, plan.end_offset)
            self.recovery_point = max(self.recovery_point, plan.end_offset)
        due = now_ms - self._recovery_point_written_ms >= RECOVERY_POINT_CHECKPOINT_INTERVAL_MS
        if self.recovery_point != self._recovery_point_queued and (checkpoint or plan.sealed or due):
            self._checkpoint_recovery_point()
        return self.flushed_offset

    def flush(self) -> int:
        """A whole flush round on the calling thread, checkpoints included (tools, tests,
        startup and shutdown); returns the offset below which everything is durable."""
        plan = self.begin_flush()
        with self.failing_on_os_error("fsync"):
            plan.run()
        flushed = self.end_flush(plan, checkpoint=True)
        with self.failing_on_os_error("checkpoint"):
            write_checkpoints(self.take_checkpoints())
        return flushed

    def take_checkpoints(self) -> list[tuple[Path, bytes]]:
        """The checkpoint files to (re)write, oldest state first: leader epochs and log start
        before the recovery point, so the recovery point never covers a batch whose epoch the
        disk does not know. The caller writes them (write_checkpoints) off the event loop."""
        epochs = self.epochs.take_checkpoint()
        if epochs is not None:
            self._pending_files = {self.epochs.path.name: epochs, **self._pending_files}
        files, self._pending_files = self._pending_files, {}
        return [(self.directory / name, data) for name, data in files.items()]

    def has_pending_persistence(self) -> bool:
        return bool(self._unflushed_sealed or self._pending_files or self.epochs.dirty)

    def _checkpoint_recovery_point(self) -> None:
        self._pending_files.pop(RECOVERY_POINT_FILE, None)  # keep it last
        self._pending_files[RECOVERY_POINT_FILE] = b"%d\n" % self.recovery_point
        self._recovery_point_queued = self.recovery_point
        self._recovery_point_written_ms = self._clock_ms()

    def _checkpoint_log_start(self) -> None:
        self._pending_files[LOG_START_FILE] = b"%d\n" % self.log_start_offset

    # -- reading -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None, verify: bool = False) -> bytes:
        """Whole batches starting with the one that holds offset (at least one batch). verify:
        every batch's CRC is checked first (CorruptLogError names the first bad one)."""
        self.check_online()
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]")
        for segment in self._segments_from(offset):
            data = segment.read(offset, max_bytes, max_offset)
            if data:
                if verify:
                    self._verify(data, offset)
                return data
        return b""

    def _verify(self, data: bytes, offset: int) -> None:
        """The bad batch's offset is not taken from its header (the offsets are outside the CRC):
        it is the offset asked for (first batch) or the end of the last good batch."""
        position, good_end = 0, offset
        while position < len(data):
            try:
                header = read_header(data, position)
            except CorruptRecordError as exc:
                CorruptionCounter.read += 1
                raise CorruptLogError(
                    f"{self.directory}: the stored batch holding offset {good_end} is corrupt: {exc.message}", good_end
                ) from None
            position += header.size
            good_end = max(good_end, header.next_offset)

    def _segments_from(self, offset: int) -> list[LogSegment]:
        for i in range(len(self.segments)):
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
        """(header) of every batch from the one holding from_offset (for producer-state rebuilds).
        A batch whose length runs past its segment (rot below the recovery point, which recovery
        does not read) raises CorruptLogError at the end of the last good batch."""
        good_end = max(from_offset, self.log_start_offset)
        for segment in self._segments_from(good_end):
            good_end = max(good_end, segment.base_offset)
            try:
                for _, header in segment.scan(0):
                    good_end = max(good_end, header.next_offset)
                    if header.last_offset >= from_offset:
                        yield header
            except CorruptRecordError as exc:
                raise CorruptLogError(f"{segment.log_path}: {exc.message}", good_end) from None

    def cut_at_corruption(self, offset: int) -> None:
        """Cuts the log before corrupt data found outside recovery (fsynced data is lost: the
        replica fetches it again)."""
        if offset >= self.log_end_offset:
            return
        self.truncate_corrupt_tail(offset)
        lost = self.log_end_offset
        self.durable_data_lost_at = lost if self.durable_data_lost_at is None else min(self.durable_data_lost_at, lost)

    # -- truncation, retention -----------------------------------------------------------------

    def truncate_to(self, offset: int) -> None:
        """Removes every batch whose last offset is >= offset (replication divergence), and the
        epochs that start there (at the log end: epochs that hold no record yet)."""
        self.check_online()
        if offset >= self.log_end_offset:
            self.epochs.truncate_from_end(offset)
            return
        if offset < self.log_start_offset:
            raise OffsetOutOfRangeError(f"cannot truncate below the log start {self.log_start_offset}")
        with self.failing_on_os_error("truncate"):
            self._generation += 1
            while len(self.segments) > 1 and self.active.base_offset >= offset:
                removed = self.segments.pop()
                removed.delete()
                if removed in self._unflushed_sealed:
                    self._unflushed_sealed.remove(removed)
            self.active.truncate_to(offset)
            self._after_truncation()

    def _after_truncation(self) -> None:
        self._unflushed_sealed = [s for s in self._unflushed_sealed if s in self.segments[:-1]]
        self.epochs.truncate_from_end(self.log_end_offset)
        self.flushed_offset = min(self.flushed_offset, self.log_end_offset)
        self.recovery_point = min(self.recovery_point, self.log_end_offset)
        self._checkpoint_recovery_point()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        with self.failing_on_os_error("truncate"):
            self._generation += 1
            for segment in self.segments:
                segment.delete()
            self.segments = [LogSegment(self.directory, offset, self.config.index_interval_bytes, self._clock_ms())]
            self._directory_dirty = True
            self.log_start_offset = offset
            self.epochs.clear()
            self.flushed_offset = self.recovery_point = offset
            self._unflushed_sealed = []
            self._checkpoint_log_start()
            self._checkpoint_recovery_point()

    def truncate_corrupt_tail(self, offset: int) -> None:
        """Cuts the log before corrupt data at offset (the repair of a replica; below the high
        watermark too: the leader has those records). The batch there may be unreadable."""
        offset = max(offset, self.log_start_offset)
        if offset >= self.log_end_offset:
            return
        with self.failing_on_os_error("truncate"):
            self._generation += 1
            while len(self.segments) > 1 and self.active.base_offset >= offset:
                removed = self.segments.pop()
                removed.delete()
            self.active.truncate_to(offset, damaged=True)
            self._after_truncation()

    def delete_records(self, offset: int) -> int:
        """Advances the log start offset to offset (Kafka's DeleteRecords); returns the new start."""
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(f"offset {offset} is past the log end {self.log_end_offset}")
        if offset <= self.log_start_offset:
            return self.log_start_offset
        with self.failing_on_os_error("delete records"):
            self.log_start_offset = offset
            self._checkpoint_log_start()
            while len(self.segments) > 1 and self.segments[1].base_offset <= offset:
                self._drop_oldest()
            self.epochs.truncate_from_start(offset)
        return offset

    def _drop_oldest(self) -> LogSegment:
        oldest = self.segments.pop(0)
        oldest.delete()
        if oldest in self._unflushed_sealed:
            self._unflushed_sealed.remove(oldest)
        return oldest

    def apply_retention(
        self, now_ms: float | None = None, high_watermark: int | None = None, by_time: bool = True
    ) -> int:
        """Deletes whole sealed segments past retention.ms / retention.bytes; returns how many.

        Never the active segment, and (when given) never a segment holding offsets at or
        above the high watermark. by_time=False: retention.bytes only (the wall clock is not
        trusted; see raftlog/broker/clock_skew.py).
        """
        if not self.config.delete:
            return 0
        self.check_online()
        now_ms = self._clock_ms() if now_ms is None else now_ms
        deleted = 0
        total = self.size_bytes()
        while len(self.segments) > 1:
            oldest = self.segments[0]
            if high_watermark is not None and self.segments[1].base_offset > high_watermark:
                break
            expired = (
                by_time
                and self.config.retention_ms >= 0
                and 0 <= oldest.max_timestamp < now_ms - self.config.retention_ms
            )
            oversized = self.config.retention_bytes >= 0 and total - oldest.size >= self.config.retention_bytes
            if not (expired or oversized):
                break
            total -= oldest.size
            with self.failing_on_os_error("retention"):
                self._drop_oldest()
            deleted += 1
            self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        if deleted:
            self._checkpoint_log_start()
            self.epochs.truncate_from_start(self.log_start_offset)
        return deleted

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """A clean close: flushed, so the next open validates nothing. Blocks on fsyncs: the
        broker calls it only at shutdown (or off its event loop). A log out of service is only
        closed: what it holds is for recovery to judge."""
        try:
            if self.failure is None:
                for segment in self.segments:  # index buffers out before the flush
                    segment.offset_index.close()
                    segment.time_index.close()
                self.flush()
        finally:
            for segment in self.segments:
                segment.close(write_indexes=self.failure is None)

    def delete(self) -> None:
        for segment in self.segments:
            segment.delete()
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()


def _replace_header(header: BatchHeader, base_offset: int, epoch: int) -> BatchHeader:
    return BatchHeader(
        base_offset,
        header.batch_length,
        epoch,
        header.magic,
        header.crc,
        header.attributes,
        header.last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        header.record_count,
    )


def partition_directory(log_dir: str | Path, topic: str, partition: int) -> Path:
    return Path(log_dir) / f"{topic}-{partition}"


class GroupCommit:
    """asyncio: appenders await sync(offset); one flush round (fdatasync of the segments, then
    the queued checkpoints; where the fsyncs run is sync_policy's choice) serves everyone whose
    data was written before it started. A failed round takes the log out of service: it is
    never run again."""

    def __init__(self, partition_log: PartitionLog):
        self._log = partition_log
        self._running: asyncio.Task | None = None

    @property
    def durable_offset(self) -> int:
        return self._log.flushed_offset

    async def sync(self, last_offset: int) -> None:
        """Returns once last_offset is fsynced (or no longer in the log: truncated meanwhile)."""
        while self._log.flushed_offset <= last_offset < self._log.log_end_offset:
            await self._round()
        self._log.check_online()

    async def persist(self) -> None:
        """Returns once everything written or queued (checkpoints, sealed segments) before the
        call is durable: a round already running may have started before it, so one more."""
        if self._running is not None:
            await asyncio.shield(self._running)
        await self._round()

    async def _round(self) -> None:
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._flush())
        await asyncio.shield(self._running)

    async def _flush(self) -> None:
        try:
            plan = self._log.begin_flush()
            try:
                await sync_policy.for_running_loop().run(plan.run, len(plan.fds), plan.directory is not None)
            except OSError as exc:
                raise self._log.fail(exc, "fsync") from exc
            self._log.end_flush(plan)
            files = self._log.take_checkpoints()
            if files:
                try:
                    await asyncio.to_thread(write_checkpoints, files)
                except OSError as exc:
                    raise self._log.fail(exc, "checkpoint") from exc
        finally:
            self._running = None


__all__ = ["AppendResult", "GroupCommit", "PartitionLog", "partition_directory", "segment_name"]
