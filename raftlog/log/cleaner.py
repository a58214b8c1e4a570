"""Log compaction (cleanup.policy=compact): keep the latest record per key in sealed segments.

One pass: build key -> latest offset over every sealed segment, then rewrite each sealed
segment, oldest first, keeping records that are the latest for their key (offsets and order
kept, gaps allowed), dropping tombstones (null value) whose segment is older than
delete.retention.ms. Batches keep their base offset, producer fields and leader epoch.

A pass runs only when the log is dirty enough: the bytes sealed since the last pass (from
the offset in `cleaner-offset-checkpoint` on) make up at least min.cleanable.dirty.ratio of
all sealed bytes, as in Kafka. The broker runs the heavy half (`prepare`: reading the sealed
segments through its own file handles and writing the cleaned copies) on a worker thread and
the quick half (`commit`: the renames) on its event loop, after checking that the sealed
segments are still the ones it read (a truncation or retention meanwhile abandons the pass).

The swap of one segment is crash-safe: the cleaned copy is written as `<base>.log.cleaned`,
fsynced, renamed to `<base>.log.swap` (the commit point), then replaces `<base>.log`. On open,
a `.swap` is completed and a `.cleaned` is discarded, so a crash leaves either the old or the
new segment, never a mix. Segments are cleaned oldest first, so a dropped tombstone never
uncovers an older value still sitting in an uncleaned earlier segment.

Blocking: `commit` fsyncs the directory (twice per segment) and writes the checkpoint with
raftlog.durable_file on the broker's event loop. That is deliberate: the segment list must not
change between the check that it is unchanged and the swap, and only the event loop can promise
that (truncation is synchronous there); it happens once per pass, minutes apart at most.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from raftlog.durable_file import fsync_directory, write_durable
from raftlog.log.record_batch import (
    LOG_OVERHEAD,
    decode_batch,
    encode_batch_with_offsets,
)
from raftlog.log.segment import LogSegment

if TYPE_CHECKING:  # the cleaner works on a PartitionLog, which calls it on open: no import cycle
    from raftlog.log.partition_log import PartitionLog

log = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"
CLEANER_CHECKPOINT_FILE = "cleaner-offset-checkpoint"


def finish_interrupted_swaps(directory: Path) -> None:
    """Completes or rolls back a compaction swap a crash interrupted."""
    for path in directory.glob("*.log" + CLEANED_SUFFIX):
        path.unlink()  # never reached the commit point: the original segment is intact
    for path in directory.glob("*.log" + SWAP_SUFFIX):
        _complete_swap(path)


def _complete_swap(swap: Path) -> None:
    target = swap.with_name(swap.name[: -len(SWAP_SUFFIX)])
    for index in (target.with_suffix(".index"), target.with_suffix(".timeindex")):
        index.unlink(missing_ok=True)  # rebuilt from the new segment
    os.replace(swap, target)


@dataclass
class CleanStats:
    segments: int = 0
    records_kept: int = 0
    records_removed: int = 0


@dataclass
class CleanPlan:
    """What `prepare` did: cleaned copies written for `segments` (as they were: `sizes`)."""

    segments: list[LogSegment]
    sizes: list[int]
    cleaned_paths: list[Path]
    first_dirty_offset: int  # the offset the next pass counts as dirty from
    stats: CleanStats


def first_dirty_offset(partition_log: PartitionLog) -> int:
    checkpoint = _read_checkpoint(partition_log.directory)
    # A truncation below the checkpoint makes the rewritten tail dirty again.
    return checkpoint if checkpoint <= partition_log.log_end_offset else partition_log.log_start_offset


def dirty_ratio(partition_log: PartitionLog) -> float:
    """Share of the sealed bytes written since the last pass (1.0 for a log never cleaned)."""
    sealed = partition_log.segments[:-1]
    total = sum(segment.size for segment in sealed)
    if total == 0:
        return 0.0
    first_dirty = first_dirty_offset(partition_log)
    dirty = sum(segment.size for segment in sealed if segment.base_offset >= first_dirty)
    return dirty / total


def needs_cleaning(partition_log: PartitionLog) -> bool:
    config = partition_log.config
    if not config.compact or len(partition_log.segments) < 2:
        return False
    ratio = dirty_ratio(partition_log)
    return ratio > 0 and ratio >= config.min_cleanable_dirty_ratio


def _latest_offsets(paths_and_sizes: list[tuple[Path, int]]) -> dict[bytes, int]:
    latest: dict[bytes, int] = {}
    for path, size in paths_and_sizes:
        for _, records in _file_batches(path, size):
            for record in records:
                if record.key is not None:
                    latest[record.key] = record.offset
    return latest


def _file_batches(path: Path, size: int):
    """Decoded batches of the first `size` bytes of a segment file, read through a handle of
    our own (the broker may close its handles meanwhile)."""
    with open(path, "rb") as f:
        position = 0
        while position < size:
            head = f.read(LOG_OVERHEAD)
            batch_size = int.from_bytes(head[8:12], "big", signed=True) + LOG_OVERHEAD
            batch = head + f.read(batch_size - LOG_OVERHEAD)
            yield decode_batch(batch)
            position += batch_size


def _keep(record, latest: dict[bytes, int], drop_tombstones: bool) -> bool:
    if record.key is None:
        return False  # compacted topics need keys; Kafka drops keyless records too
    if latest.get(record.key) != record.offset:
        return False
    return not (record.value is None and drop_tombstones)


def _write_cleaned(path: Path, size: int, latest: dict[bytes, int], drop_tombstones: bool, stats: CleanStats) -> Path:
    cleaned = path.with_name(path.name + CLEANED_SUFFIX)
    with open(cleaned, "wb") as out:
        for header, records in _file_batches(path, size):
            kept = [r for r in records if _keep(r, latest, drop_tombstones)]
            stats.records_kept += len(kept)
            stats.records_removed += len(records) - len(kept)
            if kept:
                out.write(encode_batch_with_offsets(header, kept))
        out.flush()
        os.fsync(out.fileno())
    return cleaned


def prepare(partition_log: PartitionLog, now_ms: float) -> CleanPlan | None:
    """Writes a cleaned copy of every sealed segment; safe to run off the event loop. Reads
    only what the segment list held when it was called."""
    sealed = list(partition_log.segments[:-1])
    if not sealed:
        return None
    sizes = [segment.size for segment in sealed]
    plan = CleanPlan(sealed, sizes, [], partition_log.segments[-1].base_offset, CleanStats())
    delete_retention_ms = partition_log.config.delete_retention_ms
    try:
        latest = _latest_offsets([(s.log_path, size) for s, size in zip(sealed, sizes)])
        for segment, size in zip(sealed, sizes):
            drop_tombstones = 0 <= segment.max_timestamp < now_ms - delete_retention_ms
            plan.cleaned_paths.append(_write_cleaned(segment.log_path, size, latest, drop_tombstones, plan.stats))
    except BaseException:
        abandon(plan)
        raise
    return plan


def abandon(plan: CleanPlan) -> None:
    for path in plan.cleaned_paths:
        path.unlink(missing_ok=True)


def _still_current(partition_log: PartitionLog, plan: CleanPlan) -> bool:
    """The sealed segments are the ones prepare read, unchanged, and still sealed."""
    segments = partition_log.segments
    return len(segments) > len(plan.segments) and all(
        a is b and a.size == size for a, b, size in zip(segments, plan.segments, plan.sizes)
    )


def commit(partition_log: PartitionLog, plan: CleanPlan, crash_after: str | None = None) -> CleanStats:
    """Swaps the cleaned copies in (on the thread that owns the log). `crash_after` ("cleaned"
    or "swap") stops midway, as a crash would, for the tests."""
    if crash_after == "cleaned":
        return plan.stats
    if not _still_current(partition_log, plan):
        abandon(plan)
        log.info("%s: compaction pass abandoned: the log changed meanwhile", partition_log.directory)
        return CleanStats()
    for i, (segment, cleaned) in enumerate(zip(plan.segments, plan.cleaned_paths)):
        _swap(segment, cleaned, crash_after)
        if crash_after:
            return plan.stats
        partition_log.segments[i] = _reopened(segment, partition_log.config.index_interval_bytes)
        plan.stats.segments += 1
    _write_checkpoint(partition_log.directory, plan.first_dirty_offset)
    log.info(
        "%s: compacted %d segments, kept %d records, removed %d",
        partition_log.directory,
        plan.stats.segments,
        plan.stats.records_kept,
        plan.stats.records_removed,
    )
    return plan.stats


def clean(partition_log: PartitionLog, now_ms: float, crash_after: str | None = None) -> CleanStats:
    """One whole pass on the calling thread (tools and tests; the broker splits it)."""
    plan = prepare(partition_log, now_ms)
    return commit(partition_log, plan, crash_after) if plan else CleanStats()


def _swap(segment: LogSegment, cleaned: Path, crash_after: str | None) -> None:
    swap = segment.log_path.with_name(segment.log_path.name + SWAP_SUFFIX)
    os.replace(cleaned, swap)  # the commit point
    fsync_directory(segment.directory)
    if crash_after == "swap":
        return
    segment.close()
    _complete_swap(swap)
    fsync_directory(segment.directory)


def _read_checkpoint(directory: Path) -> int:
    try:
        return int((directory / CLEANER_CHECKPOINT_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return 0


def _write_checkpoint(directory: Path, offset: int) -> None:
    write_durable(directory / CLEANER_CHECKPOINT_FILE, f"{offset}\n")


def _reopened(segment: LogSegment, index_interval_bytes: int) -> LogSegment:
    """The segment over its cleaned file, indexes rebuilt (the active segment is not touched:
    a group commit may be syncing it on another thread)."""
    fresh = LogSegment(segment.directory, segment.base_offset, index_interval_bytes, segment.created_ms)
    fresh.recover(validate=False)
    return fresh
