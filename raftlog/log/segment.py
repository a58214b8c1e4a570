"""One log segment: `<base>.log` (batches back to back) with its `.index` and `.timeindex`."""

from __future__ import annotations

import bisect
import logging
import os
from pathlib import Path

from raftlog.log.errors import CorruptRecordError
from raftlog.log.file_cache import SEGMENT_FILES, FileHandleCache
from raftlog.log.index import OffsetIndex, TimeIndex
from raftlog.log.record_batch import HEADER, HEADER_SIZE, BatchHeader, read_header

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1 << 20


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class LogSegment:
    """Its three files are opened through a FileHandleCache (raftlog/log/file_cache.py): an idle
    segment holds no descriptor once the cache needed its room; every use reopens transparently."""

    def __init__(
        self,
        directory: Path,
        base_offset: int,
        index_interval_bytes: int,
        created_ms: float,
        files: FileHandleCache | None = None,
    ):
        files = SEGMENT_FILES if files is None else files
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.created_ms = created_ms
        stem = directory / segment_name(base_offset)
        self.log_path = stem.with_suffix(".log")
        self.offset_index = OffsetIndex(stem.with_suffix(".index"), base_offset, files)
        self.time_index = TimeIndex(stem.with_suffix(".timeindex"), base_offset, files)
        # Created on first open; a reopen (after the cache closed it) must find the file.
        self._file = files.file(self.log_path, os.O_RDWR | os.O_CREAT | os.O_APPEND, os.O_RDWR | os.O_APPEND)
        with self._file.fd() as fd:
            self.size = os.fstat(fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self._bytes_since_index = 0
        # The tail: every batch from the last offset-index entry to the end of the file (base
        # offset, last offset, position), so the reads at the log end that every follower fetch
        # and caught-up consumer makes find their batch by bisection instead of reading each
        # header from the indexed position on (up to index.interval.bytes of them). In memory
        # only, bounded by index.interval.bytes; rebuilt with the indexes by recovery.
        # Invariant: the tail's batches are consecutive and the last one ends at `size`.
        self._tail_bases: list[int] = []
        self._tail_lasts: list[int] = []
        self._tail_positions: list[int] = []

    # -- reading the file ------------------------------------------------------------------

    def pread(self, position: int, length: int) -> bytes:
        with self._file.fd() as fd:
            return os.pread(fd, length, position)

    def header_at(self, position: int) -> BatchHeader:
        """The batch at position, read whole and verified (length, magic, offsets, CRC)."""
        header = self._read_header_loose(position)
        return read_header(self.pread(position, header.size))

    def _torn(self, position: int) -> BatchHeader:
        raise CorruptRecordError(f"{self.log_path}: batch at {position} is cut off")

    def _read_header_loose(self, position: int) -> BatchHeader:
        """The header at position, checked only for fitting in the file (no CRC)."""
        head = self.pread(position, HEADER_SIZE)
        if len(head) < HEADER_SIZE:
            return self._torn(position)
        header = BatchHeader(*HEADER.unpack(head))
        if header.batch_length < HEADER_SIZE - 12 or position + header.size > self.size:
            return self._torn(position)
        return header

    def scan(self, position: int = 0):
        """(position, header) of each batch from position on, headers only (no CRC)."""
        while position < self.size:
            header = self._read_header_loose(position)
            yield position, header
            position += header.size

    def position_of(self, offset: int) -> int | None:
        """Position of the first batch whose last offset is >= offset; None past the end."""
        bases = self._tail_bases
        if bases and offset >= bases[0]:
            i = bisect.bisect_right(bases, offset) - 1
            if self._tail_lasts[i] < offset:  # in a gap a compaction left: the next batch holds it
                i += 1
            return self._tail_positions[i] if i < len(bases) else None
        for position, header in self.scan(self.offset_index.lookup(offset)):
            if header.last_offset >= offset:
                return position
        return None

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        """Whole batches from the one holding offset: at least one batch, then up to max_bytes,
        stopping before any batch that starts at or after max_offset."""
        start = self.position_of(offset)
        if start is None:
            return b""
        end = start
        for position, header in self.scan(start):
            if max_offset is not None and header.base_offset >= max_offset:
                break
            if position > start and position + header.size - start > max_bytes:
                break
            end = position + header.size
        return self.pread(start, end - start) if end > start else b""

    # -- writing -----------------------------------------------------------------------------

    def append(self, buf, headers: list[tuple[int, BatchHeader]]) -> None:
        """Appends validated batches (positions are relative to buf)."""
        base_position = self.size
        with self._file.fd(write=True) as fd:
            written = os.write(fd, buf)
        if written != len(buf):
            raise OSError(f"short write to {self.log_path}: {written} of {len(buf)} bytes")
        for relative, header in headers:
            self._index_batch(base_position + relative, header)
        self.size += len(buf)

    def _index_batch(self, position: int, header: BatchHeader) -> None:
        if self._bytes_since_index >= self.index_interval_bytes or position == 0:
            self.offset_index.append(header.base_offset, position)
            self._bytes_since_index = 0
            del self._tail_bases[:], self._tail_lasts[:], self._tail_positions[:]
        assert not self._tail_positions or position > self._tail_positions[-1], (
            f"{self.log_path}: batch at {position} does not follow the tail ending at {self._tail_positions[-1]}"
        )
        self._tail_bases.append(header.base_offset)
        self._tail_lasts.append(header.last_offset)
        self._tail_positions.append(position)
        self._bytes_since_index += header.size
        if header.max_timestamp > self.max_timestamp:
            self.max_timestamp = header.max_timestamp
            self.time_index.append(header.max_timestamp, header.base_offset)
        self.next_offset = header.next_offset

    def duplicate_fds(self, with_indexes: bool) -> list[int]:
        """Descriptors to fsync on another thread: duplicates, so a close (truncation, retention,
        compaction) meanwhile cannot break the fsync. None for a segment already closed. With
        indexes for a sealed segment (its index files are closed, i.e. written out, at roll)."""
        if self._file.closed:
            return []
        with self._file.fd() as fd:
            fds = [os.dup(fd)]
        if with_indexes:
            for index in (self.offset_index, self.time_index):
                index.close()
                if index.path.exists():
                    fds.append(os.open(index.path, os.O_RDONLY))
        return fds

    def writes_made(self) -> int:
        """Writes to the `.log` so far: a flush round notes it when it starts (`synced_up_to`)."""
        return self._file.writes

    def synced_up_to(self, writes: int) -> None:
        """A flush round fsynced the writes made before writes_made() returned `writes`: from
        then on the file cache may close the descriptor (see raftlog/log/file_cache.py)."""
        self._file.synced_up_to(writes)

    # -- recovery ------------------------------------------------------------------------------

    def recover(self, validate: bool) -> bool:
        """Rebuilds indexes by scanning; with validate, checks every CRC and truncates the file
        at the first invalid batch. Returns False when something was cut off."""
        self.offset_index.reset()
        self.time_index.reset()
        self._clear_tail()
        self._bytes_since_index = 0
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        position, intact = 0, True
        while position < self.size:
            try:
                header = self.header_at(position) if validate else self._read_header_loose(position)
                if header.base_offset < self.next_offset:
                    raise CorruptRecordError(f"offset {header.base_offset} goes backwards")
            except CorruptRecordError as exc:
                log.warning("%s: truncating %d bytes at %d: %s", self.log_path, self.size - position, position, exc)
                self.truncate_bytes(position)
                intact = False
                break
            self._index_batch(position, header)
            position += header.size
        return intact

    def load_indexes(self) -> bool:
        """Loads the index files of a sealed segment; False if they must be rebuilt."""
        if not (self.offset_index.load() and self.time_index.load()):
            return False
        if not self.offset_index.is_sane(self.size):
            return False
        last_position = self.offset_index.values[-1] if self.offset_index.values else 0
        tail = list(self.scan(last_position)) if self.size else []
        if tail:
            self.next_offset = tail[-1][1].next_offset
        self.max_timestamp = self.time_index.max_timestamp
        return True

    def truncate_bytes(self, position: int) -> None:
        with self._file.fd(write=True) as fd:
            os.ftruncate(fd, position)
        self.size = position
        # Batches end where the cut is (a batch boundary), so what is left of the tail still ends at size.
        keep = bisect.bisect_left(self._tail_positions, position)
        del self._tail_bases[keep:], self._tail_lasts[keep:], self._tail_positions[keep:]

    def _clear_tail(self) -> None:
        del self._tail_bases[:], self._tail_lasts[:], self._tail_positions[:]

    def truncate_to(self, offset: int, damaged: bool = False) -> None:
        """Drops every batch whose last offset is >= offset. damaged: a batch there cannot even
        be read (its length is garbage): the position is found by scanning the good ones from
        the start, and everything from the first unreadable byte goes too."""
        position = self._position_before_damage(offset) if damaged else self.position_of(offset)
        if position is None:
            return
        # Index entries go from the first cut batch on, not just from offset: an offset inside a
        # batch cuts the whole batch, and an entry left pointing at it (at or past the new end)
        # made the log end fall back to the segment's base offset.
        cut_offset = offset
        if not damaged and position < self.size:
            cut_offset = min(cut_offset, self._read_header_loose(position).base_offset)
        first_cut_entry = bisect.bisect_left(self.offset_index.values, position)
        if first_cut_entry < len(self.offset_index.keys):
            cut_offset = min(cut_offset, self.base_offset + self.offset_index.keys[first_cut_entry])
        self.truncate_bytes(position)
        self.offset_index.truncate_to(cut_offset)
        self.time_index.truncate_to(cut_offset)
        remaining = list(self.scan(self.offset_index.lookup(offset))) if self.size else []
        self.next_offset = remaining[-1][1].next_offset if remaining else self.base_offset
        self.max_timestamp = self.time_index.max_timestamp

    def _position_before_damage(self, offset: int) -> int:
        position = 0
        try:
            for at, header in self.scan(0):
                if header.last_offset >= offset:
                    return at
                position = at + header.size
        except CorruptRecordError:
            pass
        return position

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self, write_indexes: bool = True) -> None:
        """write_indexes=False: the log dir failed, so not even buffered index entries are written."""
        for index in (self.offset_index, self.time_index):
            index.close() if write_indexes else index.abandon()
        self._file.close()

    def delete(self) -> None:
        self.close()
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            path.unlink(missing_ok=True)
