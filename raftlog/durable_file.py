"""Crash-safe small files: the one way raftlog writes a file that must survive a crash.

`write_durable(path, data)`: a temporary file next to it, written and fsynced, renamed over
the target, then the directory fsynced (so the rename itself is on disk). After a crash
the file holds either its old or its new content, never a mix or nothing.

Every checkpoint (recovery point, log start, leader epochs, cleaner offset) and
meta.properties goes through here. A file written otherwise must say why where it is
written (the high-watermark checkpoint is advisory, as in Kafka).

Blocking: these calls fsync. From asyncio code they run on a worker thread, or only at
startup/shutdown where the callers say so.
"""

from __future__ import annotations

import os
from pathlib import Path

TMP_SUFFIX = ".tmp"


def fsync_directory(directory: str | Path) -> None:
    """Makes the directory's entries (creations, renames, unlinks) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: str | Path, data: bytes | str) -> None:
    """Replaces path with data, crash-safely (see the module docstring). An OSError is passed
    on: the caller decides (a partition log goes out of service; it never retries an fsync)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(path.name + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(raw)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)
