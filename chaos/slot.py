"""The names one chaos run owns on this machine, so that two runs never touch each other's.

A run claims a slot n (0 <= n < SLOT_COUNT) by holding an exclusive flock on
`<lock dir>/slot-<n>.lock` for its whole life (the kernel drops the lock when the process
dies, however it dies). The slot gives the run its prefix `rlc<n>` (for namespaces, veth
links and tmpfs mounts: every one of them is named `rlc<n>-...`) and its subnet
10.77.<n>.0/24. Whatever carries the prefix of a slot whose lock nobody holds is the leftover
of a run that crashed; claiming removes it, and never touches a slot that is held.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO

SLOT_COUNT = 32
# /run is root's and cleared at boot; /tmp when not running as root (the chaos runs need root
# anyway, but the plan and the names can be looked at without it).
LOCK_DIRS = (Path("/run/raftlog-chaos"), Path(tempfile.gettempdir()) / "raftlog-chaos")


class SlotError(RuntimeError):
    pass


def prefix_of(index: int) -> str:
    return f"rlc{index}"


class RunSlot:
    """A claimed slot; `release` (or process exit) gives it back."""

    def __init__(self, index: int, lock_file: IO[str]):
        assert 0 <= index < SLOT_COUNT, f"slot {index} is outside 0..{SLOT_COUNT - 1}"
        self.index = index
        self._lock_file: IO[str] | None = lock_file

    @property
    def prefix(self) -> str:
        return prefix_of(self.index)

    @property
    def subnet(self) -> str:
        """The first three octets of the run's /24."""
        return f"10.77.{self.index}"

    @property
    def held(self) -> bool:
        return self._lock_file is not None

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None


def _lock_dir() -> Path:
    for directory in LOCK_DIRS:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return directory
    raise SlotError(f"no writable directory for the chaos slot locks among {[str(d) for d in LOCK_DIRS]}")


def claim() -> RunSlot:
    """Claims the lowest free slot; on the way, removes the leftovers of every slot that is
    free (its lock taken here, so no live run owns what carries its prefix)."""
    lock_dir = _lock_dir()
    leftovers = _Leftovers.list()
    claimed: RunSlot | None = None
    for index in range(SLOT_COUNT):
        lock_file = open(lock_dir / f"slot-{index}.lock", "a")  # noqa: SIM115 - held open as the lock
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.close()
            continue
        leftovers.remove(prefix_of(index))
        if claimed is None:
            claimed = RunSlot(index, lock_file)
        else:
            lock_file.close()
    if claimed is None:
        raise SlotError(f"all {SLOT_COUNT} chaos slots are held by running chaos runs (locks in {lock_dir})")
    return claimed


def _quiet(*args: str) -> None:
    subprocess.run(args, capture_output=True, timeout=30)


class _Leftovers:
    """Namespaces, links in this namespace and tmpfs mounts whose name starts with a prefix."""

    def __init__(self, namespaces: list[str], links: list[str], mounts: list[tuple[str, str]]):
        self.namespaces = namespaces
        self.links = links
        self.mounts = mounts  # (source name, mount point)

    @classmethod
    def list(cls) -> _Leftovers:
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
        namespaces = [line.split()[0] for line in listed.splitlines() if line.split()]
        listed = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
        # "7: rlc0-ha@if6: <BROADCAST,...": the name is the second field, before any "@peer"
        links = [line.split(":")[1].strip().split("@")[0] for line in listed.splitlines() if line.count(":") >= 2]
        mounts = []
        for line in Path("/proc/mounts").read_text().splitlines():
            source, mount_point, fs_type = line.split()[:3]
            if fs_type == "tmpfs":
                mounts.append((source, mount_point.replace("\\040", " ")))
        return cls(namespaces, links, mounts)

    def remove(self, prefix: str) -> None:
        mine = f"{prefix}-"
        for source, mount_point in self.mounts:
            if source.startswith(mine):
                _quiet("umount", "-l", mount_point)
        for namespace in self.namespaces:
            if namespace.startswith(mine):
                _quiet("ip", "netns", "del", namespace)
        for link in self.links:
            if link.startswith(mine):
                _quiet("ip", "link", "del", link)
