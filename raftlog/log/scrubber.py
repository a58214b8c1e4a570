"""Scrubbing: checking the CRC of every batch of a log's sealed segments, a bounded step at a time.

Recovery validates only what lies past the recovery point; bytes that rot later in a sealed
segment would be noticed only by the consumer that reads them. The broker runs `scrub_step`
on a worker thread, over its partitions in turn, at `log.scrub.bytes.per.second` (the
ReplicaManager paces it), and repairs what it finds (a follower truncates and fetches again; a
leader hands its leadership over first).

A step reads through a file handle of its own: the broker may close, truncate, compact or delete
the segment meanwhile, and its descriptor number could be reused by another file. What it finds
counts only if the segment is still part of the log afterwards (`still_current`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from raftlog.log.errors import CorruptRecordError, LogError
from raftlog.log.partition_log import PartitionLog
from raftlog.log.record_batch import HEADER, HEADER_SIZE, BatchHeader, read_header
from raftlog.log.segment import LogSegment


@dataclass(frozen=True)
class ScrubCursor:
    """Where the next step starts: a sealed segment (by base offset) and a byte position in it."""

    base_offset: int = -1
    position: int = 0
    next_offset: int = -1  # the offset after the last batch checked in that segment (-1: none yet)


@dataclass(frozen=True)
class ScrubStep:
    next_cursor: ScrubCursor
    bytes_checked: int
    segment: LogSegment | None  # the segment checked (None: nothing sealed to check)
    corrupt_offset: int | None = None  # first offset of the first bad batch found
    detail: str = ""


def _next_sealed(partition_log: PartitionLog, cursor: ScrubCursor) -> tuple[LogSegment, int] | None:
    """The sealed segment to check next and the position in it (wrapping to the first)."""
    sealed = partition_log.segments[:-1]
    for segment in sealed:
        if segment.base_offset == cursor.base_offset and cursor.position < segment.size:
            return segment, cursor.position
        if segment.base_offset > cursor.base_offset:
            return segment, 0
    return (sealed[0], 0) if sealed else None


def scrub_step(partition_log: PartitionLog, cursor: ScrubCursor, max_bytes: int) -> ScrubStep:
    """Checks whole batches of one sealed segment from the cursor, about max_bytes of them (at
    least one batch). Safe on a worker thread: it reads the segment list once and its own file."""
    assert max_bytes > 0, f"max_bytes must be positive, not {max_bytes}"
    found = _next_sealed(partition_log, cursor)
    if found is None:
        return ScrubStep(ScrubCursor(), 0, None)
    segment, position = found
    size = segment.size
    resumed = position > 0 and cursor.base_offset == segment.base_offset and cursor.next_offset >= 0
    next_offset = cursor.next_offset if resumed else segment.base_offset
    last_good_base = next_offset
    try:
        fd = os.open(segment.log_path, os.O_RDONLY)
    except FileNotFoundError:  # deleted meanwhile (retention, truncation): the next step moves on
        return ScrubStep(ScrubCursor(segment.base_offset, size), 0, None)
    except OSError as exc:
        raise LogError(f"{segment.log_path}: cannot be read for scrubbing: {exc}") from exc
    checked = 0
    try:
        while position < size and checked < max_bytes:
            head = os.pread(fd, HEADER_SIZE, position)
            header = BatchHeader(*HEADER.unpack(head)) if len(head) == HEADER_SIZE else None
            if header is None or header.batch_length <= 0 or position + header.size > size:
                return ScrubStep(
                    ScrubCursor(segment.base_offset, size),
                    checked,
                    segment,
                    next_offset,
                    f"batch at byte {position} is cut off or its length is garbage",
                )
            batch = os.pread(fd, header.size, position)
            try:
                read_header(batch)
            except CorruptRecordError as exc:
                # Its own base offset is outside the CRC: the log is cut where the good batches end.
                return ScrubStep(
                    ScrubCursor(segment.base_offset, size),
                    checked,
                    segment,
                    next_offset,
                    f"batch at byte {position}: {exc.message}",
                )
            if header.base_offset < next_offset:
                # The base offset is outside the CRC: the previous batch's may be the one that rotted.
                return ScrubStep(
                    ScrubCursor(segment.base_offset, size),
                    checked,
                    segment,
                    last_good_base,
                    f"offset {header.base_offset} at byte {position} goes backwards from {next_offset}",
                )
            last_good_base = header.base_offset
            next_offset = header.next_offset
            position += header.size
            checked += header.size
    finally:
        os.close(fd)
    return ScrubStep(ScrubCursor(segment.base_offset, position, next_offset), checked, segment)


def still_current(partition_log: PartitionLog, segment: LogSegment) -> bool:
    """The segment a step checked is still a sealed segment of the log (not deleted, compacted
    or truncated away meanwhile): only then does what the step found count."""
    return any(s is segment for s in partition_log.segments[:-1])
