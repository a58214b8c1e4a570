"""A bounded, least-recently-used cache of the open descriptors of segment and index files.

A node may host tens of thousands of partitions, and each segment has a `.log`, an `.index` and
a `.timeindex`; keeping them all open made an idle topic of 10,000 partitions cost each node
about 9,500 descriptors. Here a file is a `CachedFile`: it is opened on first use, stays open
while it is used, and is closed when the cache needs room for another (least recently used
first); the next use reopens it transparently. The number of open descriptors is at most the
limit (`log.open.files.max`; LOG_OPEN_FILES_MAX), with one exception below.

Durability: a handle with writes that no flush round has fsynced yet is never closed by the
cache (`dirty`): the fsync that makes those writes durable goes through that descriptor (a
duplicate of it), so a write-back error reaches the flush round that must see it (fsyncgate).
Writes are `os.write` calls, never buffered in Python, so closing a clean handle loses nothing.
With flush.messages=1 (the default here) a handle is dirty only between an append and its
group commit; dirty handles may hold the cache over its limit until their flush round (with a
larger flush.messages, or while a follower applies one fetch answer for more partitions than
the limit: their appends wait for their fsyncs side by side), counted in `overflows`; the flush
round that cleans them brings the cache back under the limit.

Threads: the event loop and worker threads (log opening, flush rounds, compaction) share one
cache, so it is guarded by a lock. A descriptor is handed out for one system call at a time
(`with handle.fd() as fd:`), pinned meanwhile: the cache never closes a descriptor another
thread is using (a close there could hand its number to a new file mid-read). A use never
nests inside another, so a thread waiting for room never holds a pin.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from raftlog.limits import LOG_OPEN_FILES_MAX

log = logging.getLogger(__name__)


class CachedFile:
    """One file of a segment, opened through its cache. `release()` closes the descriptor now
    (the next use reopens it); `close()` is final: a later use raises EBADF (the file may have
    been deleted: it must not be created again by a reopen)."""

    __slots__ = ("cache", "path", "_flags", "_reopen_flags", "_mode", "_fd", "_pins", "closed", "writes", "synced")

    def __init__(self, cache: FileHandleCache, path: Path, flags: int, reopen_flags: int | None = None):
        self.cache = cache
        self.path = path
        self._flags = flags
        self._reopen_flags = flags if reopen_flags is None else reopen_flags
        self._mode = 0o644
        self._fd = -1
        self._pins = 0
        self.closed = False
        # Writes made through it, and how many of them a flush round has fsynced (see `dirty`).
        self.writes = 0
        self.synced = 0

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @property
    def dirty(self) -> bool:
        return self.writes > self.synced

    @contextlib.contextmanager
    def fd(self, write: bool = False) -> Iterator[int]:
        """The open descriptor, for one system call; write: it makes the file dirty (until a
        flush round covering it calls `synced_up_to`)."""
        fd = self.cache._acquire(self)
        try:
            if write:
                self.writes += 1
            yield fd
        finally:
            self.cache._unpin(self)

    def synced_up_to(self, writes: int) -> None:
        """A flush round fsynced every write made before `writes` was read (begin of the round)."""
        self.synced = max(self.synced, writes)
        if self.cache.open_count > self.cache.max_open:  # dirty ones held it over: back under now
            self.cache.trim()

    def release(self) -> None:
        self.cache._close(self, final=False)

    def close(self) -> None:
        self.cache._close(self, final=True)


class FileHandleCache:
    def __init__(self, max_open: int = LOG_OPEN_FILES_MAX):
        self._check(max_open)
        self.max_open = max_open
        self._lock = threading.Condition(threading.Lock())
        self._open: OrderedDict[CachedFile, None] = OrderedDict()  # least recently used first
        # Counters (exported as metrics): descriptors opened (first opens and reopens), closed
        # to make room, and opened over the limit because every open one was dirty.
        self.opened = 0
        self.evicted = 0
        self.overflows = 0
        self.peak_open = 0

    @staticmethod
    def _check(max_open: int) -> None:
        if max_open < 1:
            raise ValueError(f"the open file limit must be >= 1, not {max_open}")

    @property
    def open_count(self) -> int:
        return len(self._open)

    def file(self, path: Path, flags: int, reopen_flags: int | None = None) -> CachedFile:
        return CachedFile(self, path, flags, reopen_flags)

    def set_limit(self, max_open: int) -> None:
        """A new limit (the node's setting, or a test's); closes what is over it now."""
        self._check(max_open)
        with self._lock:
            self.max_open = max_open
        self.trim()

    def trim(self) -> None:
        """Closes least recently used clean descriptors while more than the limit are open."""
        with self._lock:
            while len(self._open) > self.max_open and self._evict_one():
                pass

    def _acquire(self, handle: CachedFile) -> int:
        with self._lock:
            if handle._fd >= 0:
                self._open.move_to_end(handle)
            else:
                self._open_under_lock(handle)
            if handle.closed:  # checked after any wait: a close may have come meanwhile
                raise OSError(errno.EBADF, f"{handle.path}: used after it was closed")
            handle._pins += 1
            return handle._fd

    def _open_under_lock(self, handle: CachedFile) -> None:
        """Closes least recently used clean descriptors until one more fits, then opens handle's;
        waits for a pinned one to be let go when only pinned ones could make room. Another thread
        may open the same handle while this one waits: then there is nothing left to do."""
        while handle._fd < 0 and not handle.closed:
            if len(self._open) >= self.max_open:
                if self._evict_one():
                    continue
                if any(h._pins for h in self._open):
                    self._lock.wait()
                    continue
                self.overflows += 1  # every open descriptor is dirty: see the module docstring
                if self.overflows == 1:
                    log.warning(
                        "all %d cached log files hold unflushed writes; opening more than log.open.files.max",
                        len(self._open),
                    )
            handle._fd = os.open(handle.path, handle._flags, handle._mode)
            handle._flags = handle._reopen_flags  # every later open is a reopen
            self._open[handle] = None
            self.opened += 1
            self.peak_open = max(self.peak_open, len(self._open))

    def _evict_one(self) -> bool:
        for handle in self._open:
            if handle._pins == 0 and not handle.dirty:
                del self._open[handle]
                fd, handle._fd = handle._fd, -1
                os.close(fd)
                self.evicted += 1
                return True
        return False

    def _unpin(self, handle: CachedFile) -> None:
        with self._lock:
            handle._pins -= 1
            if handle._pins == 0:
                self._lock.notify_all()

    def _close(self, handle: CachedFile, final: bool) -> None:
        with self._lock:
            if final:
                handle.closed = True
            while handle._pins:  # another thread's system call on it ends first
                self._lock.wait()
            if handle._fd >= 0:
                del self._open[handle]
                fd, handle._fd = handle._fd, -1
                self._lock.notify_all()
                os.close(fd)


# The node's one cache of segment and index descriptors (its limit set from log.open.files.max
# at startup); logs opened by tools and tests use it too.
SEGMENT_FILES = FileHandleCache()
