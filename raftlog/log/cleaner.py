"""Log compaction (cleanup.policy=compact): keep the latest record per key in sealed segments.

One pass: build key -> latest offset over every sealed segment, then rewrite each sealed
segment, oldest first, keeping records that are the latest for their key (offsets and order
kept, gaps allowed), dropping tombstones (null value) whose segment is older than
delete.retention.ms. Batches keep their base offset, producer fields and leader epoch.

The swap of one segment is crash-safe: the cleaned copy is written as `<base>.log.cleaned`,
fsynced, renamed to `<base>.log.swap` (the commit point), then replaces `<base>.log`. On open,
a `.swap` is completed and a `.cleaned` is discarded, so a crash leaves either the old or the
new segment, never a mix. Segments are cleaned oldest first, so a dropped tombstone never
uncovers an older value still sitting in an uncleaned earlier segment.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from raftlog.log.partition_log import PartitionLog
from raftlog.log.record_batch import decode_batch, encode_batch_with_offsets
from raftlog.log.segment import LogSegment

log = logging.getLogger(__name__)

CLEANED_SUFFIX = ".cleaned"
SWAP_SUFFIX = ".swap"


def finish_interrupted_swaps(directory: Path) -> None:
    """Completes or rolls back a compaction swap a crash interrupted."""
    for path in directory.glob("*.log" + CLEANED_SUFFIX):
        path.unlink()  # never reached the commit point: the original segment is intact
    for path in directory.glob("*.log" + SWAP_SUFFIX):
        target = path.with_name(path.name[: -len(SWAP_SUFFIX)])
        for index in (target.with_suffix(".index"), target.with_suffix(".timeindex")):
            index.unlink(missing_ok=True)  # rebuilt from the new segment
        os.replace(path, target)


@dataclass
class CleanStats:
    segments: int = 0
    records_kept: int = 0
    records_removed: int = 0


def _latest_offsets(segments: list[LogSegment]) -> dict[bytes, int]:
    latest: dict[bytes, int] = {}
    for segment in segments:
        for _, records in _segment_batches(segment):
            for record in records:
                if record.key is not None:
                    latest[record.key] = record.offset
    return latest


def _segment_batches(segment: LogSegment):
    for position, header in segment.scan(0):
        yield decode_batch(segment.pread(position, header.size))


def _keep(record, latest: dict[bytes, int], drop_tombstones: bool) -> bool:
    if record.key is None:
        return False  # compacted topics need keys; Kafka drops keyless records too
    if latest.get(record.key) != record.offset:
        return False
    return not (record.value is None and drop_tombstones)


def _cleaned_bytes(segment: LogSegment, latest: dict[bytes, int], drop_tombstones: bool,
                   stats: CleanStats) -> bytes:
    parts = []
    for header, records in _segment_batches(segment):
        kept = [r for r in records if _keep(r, latest, drop_tombstones)]
        stats.records_kept += len(kept)
        stats.records_removed += len(records) - len(kept)
        if kept:
            parts.append(encode_batch_with_offsets(header, kept))
    return b"".join(parts)


def clean(partition_log: PartitionLog, now_ms: float, crash_after: str | None = None) -> CleanStats:
    """Compacts every sealed segment. `crash_after` ("cleaned" or "swap") stops midway, as a
    crash would, for the tests."""
    stats = CleanStats()
    sealed = partition_log.segments[:-1]
    if not sealed:
        return stats
    latest = _latest_offsets(sealed)
    for segment in sealed:
        drop_tombstones = 0 <= segment.max_timestamp < now_ms - partition_log.config.delete_retention_ms
        data = _cleaned_bytes(segment, latest, drop_tombstones, stats)
        _swap(segment, data, crash_after)
        if crash_after:
            return stats
        stats.segments += 1
    _reopen(partition_log)
    log.info("%s: compacted %d segments, kept %d records, removed %d", partition_log.directory, stats.segments,
             stats.records_kept, stats.records_removed)
    return stats


def _swap(segment: LogSegment, data: bytes, crash_after: str | None) -> None:
    cleaned = segment.log_path.with_name(segment.log_path.name + CLEANED_SUFFIX)
    with open(cleaned, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if crash_after == "cleaned":
        return
    swap = segment.log_path.with_name(segment.log_path.name + SWAP_SUFFIX)
    os.replace(cleaned, swap)  # the commit point
    _fsync_dir(segment.directory)
    if crash_after == "swap":
        return
    segment.close()
    finish_interrupted_swaps(segment.directory)
    _fsync_dir(segment.directory)


def _reopen(partition_log: PartitionLog) -> None:
    """Re-reads the cleaned segments (their sizes and indexes changed)."""
    for segment in partition_log.segments:
        segment.close()
    partition_log._load()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

