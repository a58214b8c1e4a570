"""The Raft log as the core sees it: a snapshot point, then entries, some not yet persisted.

Indexes are 1-based; index 0 (term 0) is the empty log. Entries at or below the snapshot
index are gone from memory; `term_at` still answers for the snapshot index itself.

Invariants, asserted where the indexes move (as etcd's log.go does; a failure names the values):
snapshot_index <= applied <= committed <= last_index, and committed never decreases.
"""

from __future__ import annotations

from raftlog.raft.messages import Entry, Snapshot


class RaftLog:
    def __init__(self, snapshot: Snapshot | None, entries: list[Entry], commit: int):
        self.snapshot_index = snapshot.index if snapshot else 0
        self.snapshot_term = snapshot.term if snapshot else 0
        self.entries: list[Entry] = list(entries)
        assert not entries or entries[0].index == self.snapshot_index + 1, (
            f"persisted entries start at {entries[0].index}, after snapshot {self.snapshot_index}"
        )
        # A snapshot covers only applied, hence committed, entries; an older persisted commit
        # (the hard state is written only when it changes) is raised to it.
        self.committed = max(commit, self.snapshot_index)
        assert self.committed <= self.last_index, (
            f"persisted commit {commit} is beyond the last persisted index {self.last_index}: log lost or truncated?"
        )
        self.applied = self.snapshot_index
        self.stable_index = self.last_index  # everything loaded from disk is persisted
        self.truncated_from: int | None = None  # lowest index replaced since the last Ready

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    @property
    def first_index(self) -> int:
        return self.snapshot_index + 1

    def term_at(self, index: int) -> int | None:
        """Term of the entry at index; None when it is compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index:
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's voting rule: the candidate's log is at least as up to date as ours."""
        return last_term > self.last_term or (last_term == self.last_term and last_index >= self.last_index)

    def slice(self, low: int, high: int) -> list[Entry]:
        """Entries with low <= index < high (low must be above the snapshot)."""
        offset = self.snapshot_index + 1
        return self.entries[low - offset : high - offset]

    def append(self, entries: list[Entry]) -> None:
        """Appends entries whose first index is at most last_index + 1, replacing any suffix they overlap."""
        if not entries:
            return
        first = entries[0].index
        if first <= self.last_index:
            if first <= self.committed:
                raise AssertionError(f"refusing to overwrite committed entry {first} (commit {self.committed})")
            del self.entries[first - self.snapshot_index - 1 :]
            self.stable_index = min(self.stable_index, first - 1)
            self.truncated_from = first if self.truncated_from is None else min(self.truncated_from, first)
        self.entries.extend(entries)

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if none."""
        for entry in entries:
            if not self.matches(entry.index, entry.term):
                return entry.index
        return 0

    def conflict_hint(self, index: int, term: int) -> tuple[int, int]:
        """For a rejected append at (index, term): the largest index <= index whose term <= term,
        and its term, so the leader can skip a whole term of mismatching entries at once."""
        index = min(index, self.last_index)
        while index > self.snapshot_index:
            entry_term = self.term_at(index)
            if entry_term is not None and entry_term <= term:
                return index, entry_term
            index -= 1
        return self.snapshot_index, self.snapshot_term

    def has_unstable(self) -> bool:
        return self.stable_index < self.last_index

    def has_to_apply(self) -> bool:
        return min(self.committed, self.stable_index) > self.applied

    def unstable(self) -> list[Entry]:
        return self.slice(self.stable_index + 1, self.last_index + 1) if self.stable_index < self.last_index else []

    def to_apply(self) -> list[Entry]:
        """Committed, persisted entries not yet applied."""
        high = min(self.committed, self.stable_index)
        if high <= self.applied:
            return []
        return self.slice(self.applied + 1, high + 1)

    def commit_to(self, index: int) -> bool:
        """Moves the commit index forward to index (an older index is a stale message: no-op)."""
        if index <= self.committed:
            return False
        assert index <= self.last_index, (
            f"commit {index} is out of range [last index {self.last_index}]: was the log truncated or lost?"
        )
        self.committed = index
        return True

    def applied_to(self, index: int) -> None:
        """The state machine has applied every entry up to index."""
        assert index <= self.committed, f"applied {index} is beyond the commit index {self.committed}"
        # An older index is a Ready handed out before a snapshot was installed over it.
        self.applied = max(self.applied, index)

    def restore(self, snapshot: Snapshot) -> None:
        """Replaces the whole log by a snapshot (InstallSnapshot)."""
        assert snapshot.index > self.committed, (
            f"snapshot at {snapshot.index} would move the commit index {self.committed} back"
        )
        self.snapshot_index, self.snapshot_term = snapshot.index, snapshot.term
        self.entries = []
        self.committed = snapshot.index
        self.applied = snapshot.index
        self.stable_index = snapshot.index

    def compact(self, index: int, term: int) -> None:
        """Drops entries up to index (covered by a snapshot the application took)."""
        if index <= self.snapshot_index:
            return
        assert index <= self.applied, f"compacting to {index} drops entries not yet applied ({self.applied})"
        del self.entries[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term = index, term
