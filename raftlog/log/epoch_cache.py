"""The leader-epoch cache of a partition: (epoch, first offset of that epoch), checkpointed.

The file `leader-epoch-checkpoint` uses Kafka's text format: a version line (0), a count
line, then one "epoch start_offset" line per entry. A change only marks the cache dirty; the
owner (PartitionLog) takes the new content with `take_checkpoint` and writes it crash-safely
off the event loop.
"""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_FILE = "leader-epoch-checkpoint"
UNDEFINED = (-1, -1)


class LeaderEpochCache:
    def __init__(self, directory: Path, load: bool = True):
        """load=False: a new partition's cache, empty (its directory was just made: no file)."""
        self.path = directory / CHECKPOINT_FILE
        self.entries: list[tuple[int, int]] = []
        self.dirty = False
        self.damaged = False  # the file could not be read: the owner rebuilds it from the batches
        if load and self.path.exists():
            try:
                self.entries = _parse(self.path.read_text())
            except (ValueError, IndexError, UnicodeDecodeError):
                self.damaged, self.dirty = True, True

    @property
    def latest_epoch(self) -> int:
        return self.entries[-1][0] if self.entries else -1

    def assign(self, epoch: int, start_offset: int) -> None:
        """Records that `epoch` starts at `start_offset` (ignored unless it is a newer epoch)."""
        if epoch < 0 or (self.entries and epoch <= self.entries[-1][0]):
            return
        # An epoch cannot start before an earlier one: drop entries a truncation made stale.
        self.entries = [(e, o) for e, o in self.entries if o < start_offset]
        self.entries.append((epoch, start_offset))
        self._write()

    def end_offset_for(self, epoch: int, log_end_offset: int) -> tuple[int, int]:
        """(the largest epoch <= epoch, the offset where it ends): what a diverging follower needs."""
        if not self.entries or epoch < self.entries[0][0]:
            return UNDEFINED
        for i in range(len(self.entries) - 1, -1, -1):
            found, _ = self.entries[i]
            if found <= epoch:
                end = self.entries[i + 1][1] if i + 1 < len(self.entries) else log_end_offset
                return found, end
        return UNDEFINED

    def truncate_from_end(self, end_offset: int) -> None:
        """The log was truncated to end_offset: epochs starting there or later are gone."""
        kept = [(e, o) for e, o in self.entries if o < end_offset]
        if kept != self.entries:
            self.entries = kept
            self._write()

    def truncate_from_start(self, start_offset: int) -> None:
        """The log now starts at start_offset: keep the epoch in force there, starting at it."""
        earlier = [i for i, (_, o) in enumerate(self.entries) if o <= start_offset]
        if not earlier:
            return
        keep_from = earlier[-1]
        entries = [(self.entries[keep_from][0], start_offset)] + self.entries[keep_from + 1 :]
        if entries != self.entries:
            self.entries = entries
            self._write()

    def clear(self) -> None:
        self.entries = []
        self._write()

    def _write(self) -> None:
        self.dirty = True

    def take_checkpoint(self) -> bytes | None:
        """The checkpoint file's new content if it changed since the last call, else None."""
        if not self.dirty:
            return None
        self.dirty = False
        text = f"0\n{len(self.entries)}\n" + "".join(f"{e} {o}\n" for e, o in self.entries)
        return text.encode()


def _parse(text: str) -> list[tuple[int, int]]:
    lines = [line.split() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return []
    return [(int(epoch), int(offset)) for epoch, offset in lines[2 : 2 + int(lines[1][0])]]
