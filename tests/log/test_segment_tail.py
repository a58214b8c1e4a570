"""A segment finds the batch holding an offset near its end from its in-memory tail (the batches
since the last sparse index entry) instead of reading headers one by one: the answer must be the
one a scan of the whole file gives, through appends, gaps left by compaction, truncations and a
reopen with recovery."""

from __future__ import annotations

import random

from raftlog.log.record_batch import encode_batch, iter_headers
from raftlog.log.segment import LogSegment


def scanned_position(segment: LogSegment, offset: int) -> int | None:
    for position, header in segment.scan(0):
        if header.last_offset >= offset:
            return position
    return None


def check_every_offset(segment: LogSegment) -> None:
    for offset in range(segment.base_offset, segment.next_offset + 2):
        assert segment.position_of(offset) == scanned_position(segment, offset), offset


def append_random(segment: LogSegment, rng: random.Random) -> None:
    base = segment.next_offset + (rng.randrange(1, 4) if rng.random() < 0.2 else 0)  # a compaction gap
    records = [(None, b"v" * rng.randrange(1, 300), None, 1) for _ in range(rng.randrange(1, 5))]
    buf = bytearray(encode_batch(records, base_offset=base, partition_leader_epoch=0))
    segment.append(buf, list(iter_headers(buf)))


def test_positions_from_the_tail_match_a_full_scan_through_appends_gaps_truncations_and_recovery(tmp_path):
    rng = random.Random(15)
    segment = LogSegment(tmp_path, 0, index_interval_bytes=512, created_ms=0)
    for step in range(300):
        append_random(segment, rng)
        if step % 7 == 0:
            check_every_offset(segment)
        if step % 50 == 49:
            cut = rng.randrange(segment.base_offset, segment.next_offset)  # inside a batch, often
            kept = [h for _, h in segment.scan(0) if h.last_offset < cut]
            segment.truncate_to(cut)
            # The batch holding the cut goes whole; the log ends after the last batch kept.
            assert segment.next_offset == (kept[-1].next_offset if kept else segment.base_offset)
            check_every_offset(segment)
    assert len(segment.offset_index.keys) > 10, "the test must cross many index entries"
    segment.close()
    reopened = LogSegment(tmp_path, 0, index_interval_bytes=512, created_ms=0)
    assert reopened.recover(validate=True)
    check_every_offset(reopened)
    append_random(reopened, rng)
    check_every_offset(reopened)
    reopened.close()
