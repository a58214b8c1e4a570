"""Sparse segment indexes, Kafka's layout: `.index` (relative offset int32 -> position int32)
and `.timeindex` (timestamp int64 -> relative offset int32), big-endian, append-only.

Entries live in memory (a segment holds at most a few thousand) and are appended to the
file as they are made (one os.write each, nothing buffered in Python, through the node's
file cache: an idle index holds no descriptor); truncation rewrites the file. An index is a
cache: recovery rebuilds it from the log whenever it is missing or fails its sanity check.
"""

from __future__ import annotations

import bisect
import os
import struct
from pathlib import Path

from raftlog.log.file_cache import SEGMENT_FILES, CachedFile, FileHandleCache

_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")


class _SparseIndex:
    entry: struct.Struct

    def __init__(self, path: Path, base_offset: int, files: FileHandleCache | None = None):
        self.path = path
        self.base_offset = base_offset
        self.keys: list[int] = []
        self.values: list[int] = []
        self._files = SEGMENT_FILES if files is None else files
        self._file: CachedFile | None = None  # for appends, from the first one until close()

    def load(self) -> bool:
        """Reads the file; False when it is missing or torn (the caller rebuilds)."""
        if not self.path.exists():
            return False
        raw = self.path.read_bytes()
        if len(raw) % self.entry.size:
            return False
        self.keys, self.values = [], []
        for key, value in self.entry.iter_unpack(raw):
            self._append_memory(key, value)
        return True

    def _append_memory(self, key: int, value: int) -> None:
        self.keys.append(key)
        self.values.append(value)

    def write_entry(self, key: int, value: int) -> None:
        self._append_memory(key, value)
        if self._file is None:
            self._file = self._files.file(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        data = self.entry.pack(key, value)
        with self._file.fd() as fd:  # not dirty: an index is a cache, never fsynced for an append
            written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {self.path}: {written} of {len(data)} bytes")

    def rewrite(self) -> None:
        # No fsync: an index is a cache (see the module docstring); a sealed segment's index
        # files are fsynced, with the directory, by the flush round after its roll.
        self.close()
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(self.entry.pack(k, v) for k, v in zip(self.keys, self.values)))
        os.replace(tmp, self.path)

    def reset(self) -> None:
        self.keys, self.values = [], []
        if self._file is None and not self.path.exists():
            return  # already empty (a new segment): a missing index reads as empty, and is rebuilt
        self.rewrite()

    def close(self) -> None:
        """Its descriptor is closed (every entry is already written to the OS: nothing is buffered)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def abandon(self) -> None:
        """Closes without writing anything more (the log dir failed; recovery rebuilds the index).
        Entries are written as they are made, so there is nothing buffered to drop."""
        self.close()


class OffsetIndex(_SparseIndex):
    """relative offset -> byte position of the batch that starts there."""

    entry = _OFFSET_ENTRY

    def append(self, offset: int, position: int) -> None:
        relative = offset - self.base_offset
        if not self.keys or relative > self.keys[-1]:
            self.write_entry(relative, position)

    def lookup(self, offset: int) -> int:
        """Position of the last indexed batch starting at or before offset (0 if none)."""
        i = bisect.bisect_right(self.keys, offset - self.base_offset) - 1
        return self.values[i] if i >= 0 else 0

    def truncate_to(self, offset: int) -> None:
        """Drops entries for batches at or above offset."""
        keep = bisect.bisect_left(self.keys, offset - self.base_offset)
        if keep < len(self.keys):
            del self.keys[keep:], self.values[keep:]
            self.rewrite()

    def is_sane(self, file_size: int) -> bool:
        return all(a < b for a, b in zip(self.keys, self.keys[1:])) and all(
            0 <= p < max(file_size, 1) for p in self.values
        )


class TimeIndex(_SparseIndex):
    """max timestamp so far -> relative offset of the batch that reached it."""

    entry = _TIME_ENTRY

    def append(self, timestamp: int, offset: int) -> None:
        if not self.keys or timestamp > self.keys[-1]:
            self.write_entry(timestamp, offset - self.base_offset)

    def lookup(self, timestamp: int) -> int:
        """Relative offset from which to scan for the first batch with max timestamp >= timestamp."""
        i = bisect.bisect_left(self.keys, timestamp) - 1
        return self.values[i] if i >= 0 else 0

    def truncate_to(self, offset: int) -> None:
        relative = offset - self.base_offset
        keep = [(k, v) for k, v in zip(self.keys, self.values) if v < relative]
        if len(keep) != len(self.keys):
            self.keys = [k for k, _ in keep]
            self.values = [v for _, v in keep]
            self.rewrite()

    @property
    def max_timestamp(self) -> int:
        return self.keys[-1] if self.keys else -1
