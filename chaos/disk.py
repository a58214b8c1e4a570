"""Disk faults for the chaos runs: a node's log dir on a small tmpfs mount of its own (so that
filling it touches neither the machine's disk nor the other nodes), filling and freeing that
mount, and flipping one byte of a sealed segment. Needs root (mount)."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from raftlog.log.errors import LogError
from raftlog.log.record_batch import HEADER_SIZE, LOG_OVERHEAD, read_header

FILLER_NAME = "chaos.filler"  # no "-": nothing takes it for a partition directory
_BATCH_LENGTH = struct.Struct(">i")  # at byte 8 of a batch; counts the bytes after LOG_OVERHEAD


class DiskFaultError(RuntimeError):
    pass


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise DiskFaultError(f"{' '.join(args)}: {done.stderr.strip() or done.returncode}")


class TmpfsMount:
    """A tmpfs of `size_bytes` at mount_point, named `source` in /proc/mounts (the run's slot
    prefix starts it, so a crashed run's mount is found and removed by the next run)."""

    def __init__(self, source: str, mount_point: Path, size_bytes: int):
        assert size_bytes > 0, f"a tmpfs needs a positive size, got {size_bytes}"
        self.source = source
        self.mount_point = Path(mount_point)
        self.size_bytes = size_bytes
        self.mounted = False

    @property
    def filler_path(self) -> Path:
        return self.mount_point / FILLER_NAME

    def mount(self) -> None:
        self.mount_point.mkdir(parents=True, exist_ok=True)
        _run("mount", "-t", "tmpfs", "-o", f"size={self.size_bytes},mode=0755", self.source, str(self.mount_point))
        self.mounted = True

    def unmount(self) -> None:
        """Idempotent; a lazy unmount if something still holds a file open there."""
        if not self.mounted:
            return
        done = subprocess.run(["umount", str(self.mount_point)], capture_output=True, timeout=30)
        if done.returncode != 0:
            _run("umount", "-l", str(self.mount_point))
        self.mounted = False

    def fill(self) -> int:
        """Writes a filler file until the mount has no byte left; returns its size in bytes."""
        assert self.mounted, f"{self.mount_point} is not mounted"
        written = 0
        chunk_bytes = 1 << 20
        fd = os.open(self.filler_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            while chunk_bytes >= 1:
                try:
                    written += os.write(fd, bytes(chunk_bytes))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk_bytes //= 2  # the last pages: smaller writes until not one byte fits
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self.filler_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class FlippedByte:
    segment: Path
    position: int  # in the segment file
    batch_base_offset: int

    def __str__(self) -> str:
        return f"{self.segment.name} byte {self.position} (batch at offset {self.batch_base_offset})"


def sealed_segments(partition_dir: Path) -> list[Path]:
    """Every .log segment but the last (the active one), in offset order."""
    return sorted(p for p in partition_dir.glob("*.log") if p.stem.isdigit())[:-1]


def flip_byte(partition_dir: Path, draw: int) -> FlippedByte:
    """Inverts one byte of a record (past the batch header, so inside the CRC-covered range:
    a reader that checks the CRC sees it) in a sealed segment; the segment, the batch and the
    byte are chosen by `draw`. The node owning the files must be stopped."""
    segments = sealed_segments(partition_dir)
    if not segments:
        raise DiskFaultError(f"{partition_dir} has no sealed segment to damage")
    segment = segments[draw % len(segments)]
    draw //= len(segments)
    data = segment.read_bytes()
    batches: list[tuple[int, int]] = []  # (position, size) of batches that carry records
    position = 0
    while position + HEADER_SIZE <= len(data):
        size = _BATCH_LENGTH.unpack_from(data, position + 8)[0] + LOG_OVERHEAD
        if size <= HEADER_SIZE or position + size > len(data):
            break
        batches.append((position, size))
        position += size
    if not batches:
        raise DiskFaultError(f"{segment} holds no whole batch")
    batch_position, batch_size = batches[draw % len(batches)]
    draw //= len(batches)
    target = batch_position + HEADER_SIZE + draw % (batch_size - HEADER_SIZE)
    fd = os.open(segment, os.O_RDWR)
    try:
        os.pwrite(fd, bytes([data[target] ^ 0xFF]), target)
        os.fsync(fd)
    finally:
        os.close(fd)
    base_offset = struct.unpack_from(">q", data, batch_position)[0]
    return FlippedByte(segment, target, base_offset)


def damaged_batches(partition_dir: Path) -> list[int]:
    """Base offsets of the batches in partition_dir that fail their checks (the CRC). Read-only,
    so it may look at the files of a running node: a batch still being written at the end is
    not counted, a segment deleted meanwhile is skipped."""
    damaged: list[int] = []
    for segment in sorted(p for p in partition_dir.glob("*.log") if p.stem.isdigit()):
        try:
            data = segment.read_bytes()
        except FileNotFoundError:
            continue
        position = 0
        while position + HEADER_SIZE <= len(data):
            size = _BATCH_LENGTH.unpack_from(data, position + 8)[0] + LOG_OVERHEAD
            if size <= HEADER_SIZE or position + size > len(data):
                break
            try:
                read_header(data, position)
            except LogError:
                damaged.append(struct.unpack_from(">q", data, position)[0])
            position += size
    return damaged
