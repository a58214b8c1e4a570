"""ReplicaLog: what replication needs from a partition log, in one place.

`PartitionReplicaLog` puts it over raftlog.log.PartitionLog: appends go through the
flush policy (group commit: an append that must be durable awaits one shared fdatasync),
and the high watermark is checkpointed to `replication-offset-checkpoint` in the partition
directory (advisory, like Kafka's: rewritten at most every HW_CHECKPOINT_INTERVAL_S).

No fsync runs on the event loop: fsyncs and checkpoint writes go through the log's
GroupCommit on a worker thread; changes that only queue checkpoints (roll, truncation, new
epochs, retention) start a background round (`_persist_soon`); callers that must not go on
before they are durable await `persist()`. Only `close` (shutdown) fsyncs on the caller's thread.
A failed write or fsync takes the log out of service (KAFKA_STORAGE_ERROR from then on).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from raftlog.limits import BACKGROUND_FLUSH_ROUNDS_MAX
from raftlog.log import (
    GroupCommit,
    LogConfig,
    LogError,
    PartitionLog,
    cleaner,
    partition_directory,
    scrubber,
)
from raftlog.log.errors import CorruptLogError
from raftlog.log.partition_log import CorruptionCounter
from raftlog.log.record_batch import BatchHeader, iter_headers

log = logging.getLogger(__name__)

HW_CHECKPOINT_FILE = "replication-offset-checkpoint"
HW_CHECKPOINT_INTERVAL_S = 0.5


_BACKGROUND_ROUNDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _background_rounds() -> asyncio.Semaphore:
    """The event loop's bound on background flush rounds running at once (nobody awaits them):
    thousands of partitions changing role together (a topic created, a broker back) must leave
    worker threads and disk to the group commits that appenders wait for."""
    loop = asyncio.get_running_loop()
    semaphore = _BACKGROUND_ROUNDS.get(loop)
    if semaphore is None:
        semaphore = _BACKGROUND_ROUNDS[loop] = asyncio.Semaphore(BACKGROUND_FLUSH_ROUNDS_MAX)
    return semaphore


@dataclass(frozen=True)
class AppendInfo:
    first_offset: int
    last_offset: int
    batches: list[BatchHeader] = field(default_factory=list)


class ReplicaLog(Protocol):
    @property
    def log_start_offset(self) -> int: ...
    @property
    def log_end_offset(self) -> int: ...

    def parse_headers(self, records: bytes) -> list[BatchHeader]: ...
    async def append_as_leader(
        self, records: bytes, leader_epoch: int, on_written: Callable[[AppendInfo], None] | None = None
    ) -> AppendInfo: ...
    async def append_as_follower(
        self, records: bytes, on_written: Callable[[AppendInfo], None] | None = None
    ) -> AppendInfo: ...
    async def wait_durable(self, last_offset: int) -> None: ...
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes: ...
    def assign_epoch(self, epoch: int, start_offset: int) -> None: ...
    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...
    def latest_epoch(self) -> int: ...
    def batch_headers(self) -> Iterator[BatchHeader]: ...
    def truncate_to(self, offset: int) -> None: ...
    def truncate_fully_and_start_at(self, offset: int) -> None: ...
    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None: ...
    def read_high_watermark(self) -> int: ...
    def write_high_watermark(self, offset: int) -> None: ...
    def size_bytes(self) -> int: ...
    async def maintain(self, high_watermark: int, retention: bool = True, by_time: bool = True) -> None: ...
    async def follow_log_start(self, offset: int) -> None: ...
    def reconfigure(self, config: LogConfig) -> None: ...
    async def persist(self) -> None: ...
    def close(self) -> None: ...
    def delete(self) -> None: ...
    # Failures: the log dir holding the log, a listener told (on the event loop or the opening
    # thread) when a write or fsync fails, and taking it out of service from outside (its dir failed).
    @property
    def log_dir(self) -> Path: ...
    def set_failure_listener(self, listener: Callable[[LogError], None]) -> None: ...
    def take_offline(self, reason: str) -> None: ...
    # Corruption: stored batches failing their CRC, found by a read (listener) or by scrubbing.
    def set_corruption_listener(self, listener: Callable[[CorruptLogError], None]) -> None: ...
    @property
    def has_sealed_segments(self) -> bool: ...
    async def scrub(self, cursor: scrubber.ScrubCursor, max_bytes: int) -> scrubber.ScrubStep: ...
    @property
    def durable_data_lost_at(self) -> int | None: ...
    def cut_at_corruption(self, offset: int) -> None: ...


class PartitionReplicaLog:
    def __init__(self, directory: Path, config: LogConfig):
        self._log = PartitionLog(directory, config)
        self._group = GroupCommit(self._log)
        self._hw_path = Path(directory) / HW_CHECKPOINT_FILE
        self._hw = 0
        self._hw_written_at = 0.0
        self._background: asyncio.Task | None = None
        self._on_corruption: Callable[[CorruptLogError], None] | None = None

    @property
    def log_start_offset(self) -> int:
        return self._log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self._log.log_end_offset

    @property
    def partition_log(self) -> PartitionLog:
        return self._log

    @property
    def log_dir(self) -> Path:
        return self._log.directory.parent

    def set_failure_listener(self, listener: Callable[[LogError], None]) -> None:
        self._log.on_failure = lambda _log, error: listener(error)

    def take_offline(self, reason: str) -> None:
        self._log.mark_offline(reason)

    def set_corruption_listener(self, listener: Callable[[CorruptLogError], None]) -> None:
        self._on_corruption = listener

    @property
    def durable_data_lost_at(self) -> int | None:
        return self._log.durable_data_lost_at

    def cut_at_corruption(self, offset: int) -> None:
        """Cuts the log before corrupt data (the batch there may be unreadable)."""
        self._log.cut_at_corruption(offset)
        self._hw = min(self._hw, self._log.log_end_offset)
        self._persist_soon_if_running()

    @property
    def has_sealed_segments(self) -> bool:
        """Whether scrubbing has anything to check (only sealed segments are scrubbed): most of
        thousands of idle partitions have none, and the scrubber passes them by without a call."""
        return len(self._log.segments) >= 2

    async def scrub(self, cursor: scrubber.ScrubCursor, max_bytes: int) -> scrubber.ScrubStep:
        """One scrubbing step on a worker thread; a corruption counts only if the segment is
        still part of the log when it returns. A log with no sealed segment answers at once,
        without a hop to a thread."""
        if not self.has_sealed_segments:
            return scrubber.ScrubStep(scrubber.ScrubCursor(), 0, None)
        step = await asyncio.to_thread(scrubber.scrub_step, self._log, cursor, max_bytes)
        if step.corrupt_offset is not None:
            if step.segment is None or not scrubber.still_current(self._log, step.segment):
                return scrubber.ScrubStep(step.next_cursor, step.bytes_checked, None)
            CorruptionCounter.scrubbed += 1
        return step

    def reconfigure(self, config: LogConfig) -> None:
        """Topic configs altered while the log is open take effect from the next append, roll or
        retention pass (as in Kafka); nothing already written changes."""
        self._log.config = config

    def parse_headers(self, records: bytes) -> list[BatchHeader]:
        return [header for _, header in iter_headers(records)]

    async def _append(
        self, records: bytes, leader_epoch: int | None, on_written: Callable[[AppendInfo], None] | None = None
    ) -> AppendInfo:
        result = self._log.append(records, leader_epoch)
        info = AppendInfo(result.first_offset, result.last_offset, result.headers)
        if on_written is not None:
            on_written(info)
        if self._log.needs_flush():
            await self._group.sync(result.last_offset)
        else:
            self._persist_soon()
        return info

    async def persist(self) -> None:
        """Returns once every change made so far (sealed segments, checkpoints) is durable."""
        await self._group.persist()

    def _persist_soon(self) -> None:
        """A background flush round for queued checkpoints and sealed segments (one at a time)."""
        if not self._log.has_pending_persistence() or self._log.failure is not None:
            return
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._persist_in_background())

    async def _persist_in_background(self) -> None:
        try:
            async with _background_rounds():
                await self._group.persist()
        except Exception as exc:  # noqa: BLE001 - the log is out of service; every caller now sees it
            log.debug("%s: background flush failed: %s", self._log.directory, exc)

    async def append_as_leader(
        self, records: bytes, leader_epoch: int, on_written: Callable[[AppendInfo], None] | None = None
    ) -> AppendInfo:
        """Writes, calls on_written (before any fsync wait), then waits for the flush policy."""
        return await self._append(records, leader_epoch, on_written)

    async def append_as_follower(
        self, records: bytes, on_written: Callable[[AppendInfo], None] | None = None
    ) -> AppendInfo:
        """Writes, calls on_written (before any fsync wait), then waits for the flush policy."""
        return await self._append(records, None, on_written)

    async def wait_durable(self, last_offset: int) -> None:
        """Returns once last_offset is as durable as the flush policy makes an append (for a
        retried duplicate, whose original append may still be waiting for its fsync). A log out
        of service answers KAFKA_STORAGE_ERROR: its fsync failed, so the original may be lost."""
        self._log.check_online()
        if self._log.config.flush_messages <= 1:
            await self._group.sync(last_offset)

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Every batch served is CRC-checked first: a corrupt one is never handed to a consumer
        or a follower; the listener (the broker) repairs the replica."""
        try:
            return self._log.read(offset, max_bytes, max_offset, verify=True)
        except CorruptLogError as exc:
            if self._on_corruption is not None:
                self._on_corruption(exc)
            raise

    def assign_epoch(self, epoch: int, start_offset: int) -> None:
        self._log.epochs.assign(epoch, start_offset)
        if self._log.log_end_offset == 0:
            # A log that holds no batch yet (a new partition): nothing in it is of this epoch, and
            # the flush round of its first batch writes the epochs before that batch counts as
            # durable. A crash before then loses nothing: the epoch comes again from the
            # metadata. So a topic of thousands of new partitions costs no fsync per leader here.
            return
        self._persist_soon_if_running()

    def _persist_soon_if_running(self) -> None:
        """_persist_soon from synchronous methods, which tests also call without a loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._persist_soon()

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        return self._log.end_offset_for_epoch(epoch)

    def latest_epoch(self) -> int:
        return self._log.latest_epoch()

    def batch_headers(self) -> Iterator[BatchHeader]:
        return self._log.batch_headers()

    def truncate_to(self, offset: int) -> None:
        """Callers await persist() before writing after it (the lowered recovery point first)."""
        self._log.truncate_to(offset)
        self._hw = min(self._hw, offset)
        self._persist_soon_if_running()

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self._log.truncate_fully_and_start_at(offset)
        self._hw = offset
        self._persist_soon_if_running()

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        return self._log.offset_for_timestamp(timestamp_ms)

    def read_high_watermark(self) -> int:
        try:
            self._hw = int(self._hw_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            self._hw = 0
        return self._hw

    def write_high_watermark(self, offset: int) -> None:
        self._hw = offset
        now = time.monotonic()
        if now - self._hw_written_at >= HW_CHECKPOINT_INTERVAL_S and self._log.failure is None:
            with self._log.failing_on_os_error("high watermark checkpoint"):  # a write in the log dir like any other
                self._write_hw()
            self._hw_written_at = now

    def _write_hw(self) -> None:
        # Advisory, like Kafka's replication-offset-checkpoint: no fsync. A high watermark lost
        # in a crash only starts lower; the leader's next fetch response raises it again.
        tmp = self._hw_path.with_suffix(".tmp")
        tmp.write_text(f"{self._hw}\n")
        os.replace(tmp, self._hw_path)

    def size_bytes(self) -> int:
        return self._log.size_bytes()

    async def maintain(self, high_watermark: int, retention: bool = True, by_time: bool = True) -> None:
        """Retention (below the high watermark only; by_time=False: retention.bytes only), then
        compaction when the log is dirty enough: the cleaned copies are written on a worker
        thread, the swap happens here on the event loop, where nothing else touches the segment
        list meanwhile. A follower passes retention=False: it follows the leader's log start."""
        if retention and self._log.apply_retention(high_watermark=high_watermark, by_time=by_time):
            await self._group.persist()  # the new log start checkpoint
        if cleaner.needs_cleaning(self._log):
            self._log.check_online()
            try:
                plan = await asyncio.to_thread(cleaner.prepare, self._log, time.time() * 1000.0)
            except OSError as exc:  # writing the cleaned copies failed (ENOSPC...): a write in this log dir
                raise self._log.fail(exc, "compaction") from exc
            if plan is not None:
                with self._log.failing_on_os_error("compaction swap"):  # a half-done swap: out of service
                    cleaner.commit(self._log, plan)

    async def follow_log_start(self, offset: int) -> None:
        """A follower drops what its leader's retention (or DeleteRecords) dropped."""
        if self._log.log_start_offset < offset <= self._log.log_end_offset:
            self._log.delete_records(offset)
            await self._group.persist()  # the new log start checkpoint

    def close(self) -> None:
        """Shutdown only: fsyncs on the calling thread. A log out of service writes nothing more."""
        if self._background is not None:
            self._background.cancel()
        if self._log.failure is None:
            self._write_hw()
        self._log.close()

    def delete(self) -> None:
        self._log.delete()


def open_replica_log(
    log_dirs: list[Path],
    topic: str,
    partition: int,
    config: LogConfig,
    offline_dirs: set[Path] | frozenset[Path] = frozenset(),
) -> ReplicaLog:
    """Opens (or creates) the partition's log in the log dir holding it, else the least loaded
    online one. A log in an offline dir (a write there failed) is not opened until a restart."""
    for log_dir in log_dirs:
        directory = partition_directory(log_dir, topic, partition)
        if directory.exists():
            if Path(log_dir) in offline_dirs:
                raise LogError(f"{directory} is in the offline log dir {log_dir}")
            return PartitionReplicaLog(directory, config)
    online = [d for d in log_dirs if Path(d) not in offline_dirs]
    if not online:
        raise LogError(f"every log dir is offline: {[str(d) for d in log_dirs]}")
    # Counting a dir's partitions is a scan of it: with one log dir (the usual case) there is
    # nothing to choose, and opening thousands of new partitions must not scan thousands of times.
    emptiest = online[0] if len(online) == 1 else min(online, key=_partition_count)
    return PartitionReplicaLog(partition_directory(emptiest, topic, partition), config)


def _partition_count(log_dir: Path) -> int:
    try:
        with os.scandir(log_dir) as entries:
            return sum(1 for entry in entries if "-" in entry.name and entry.is_dir())
    except FileNotFoundError:
        return 0
