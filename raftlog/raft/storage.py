"""Durable Raft state in RocksDB (column family "raft").

Keys:
    b"hs"                      hard state: version byte 1, then term (uint64), vote (int64, -1 = none),
                               commit (uint64), big-endian
    b"snap"                    latest snapshot: index, term (2 x uint64), then the data
    b"snapcfg"                 the voter set at the snapshot's index (raftlog.raft.membership); absent
                               in stores from before configuration entries (the configured voters)
    b"e" + index (uint64 BE)   a log entry: term (uint64), then the data

Big-endian indexes sort in log order, so a range delete drops a suffix or a prefix of the
log in one operation. Every Ready is written as ONE synced write batch: one fsync covers
all the entries and the hard state it carries (group commit).

Hard state written before version 1 is 24 bytes (term, vote, commit as uint64) with vote 0
meaning "no vote" (ids started at 1 then). It is still read, vote 0 as no vote: a node 0 that
had voted for itself under that format could vote again in that one term; any later term
is written in the new format.
"""

from __future__ import annotations

import struct

from raftlog.node_ids import NO_NODE
from raftlog.raft.messages import Entry, HardState, PersistedState, Ready, Snapshot
from raftlog.store import Store, WriteBatch

HARD_STATE_KEY = b"hs"
SNAPSHOT_KEY = b"snap"
SNAPSHOT_CONFIG_KEY = b"snapcfg"
ENTRY_PREFIX = b"e"
_U64 = struct.Struct(">Q")
_TWO_U64 = struct.Struct(">QQ")
_HARD_STATE_V0 = struct.Struct(">QQQ")  # term, vote (0 = none), commit: read only
_HARD_STATE_V1 = struct.Struct(">BQqQ")  # version, term, vote (NO_NODE = none), commit
HARD_STATE_VERSION = 1
_MAX_INDEX = 2**64 - 1


def entry_key(index: int) -> bytes:
    return ENTRY_PREFIX + _U64.pack(index)


def encode_hard_state(hard_state: HardState) -> bytes:
    assert hard_state.vote >= NO_NODE, f"vote {hard_state.vote} is neither a node id nor NO_NODE"
    return _HARD_STATE_V1.pack(HARD_STATE_VERSION, hard_state.term, hard_state.vote, hard_state.commit)


def decode_hard_state(raw: bytes) -> HardState:
    if len(raw) == _HARD_STATE_V0.size:
        term, vote, commit = _HARD_STATE_V0.unpack(raw)
        return HardState(term, NO_NODE if vote == 0 else vote, commit)
    if len(raw) != _HARD_STATE_V1.size or raw[0] != HARD_STATE_VERSION:
        raise ValueError(
            f"raft hard state of {len(raw)} bytes, version {raw[:1].hex()}: not a format this version reads"
        )
    _, term, vote, commit = _HARD_STATE_V1.unpack(raw)
    return HardState(term, vote, commit)


class RaftStorage:
    def __init__(self, store: Store):
        self._store = store
        self._cf = store.family("raft")

    def load(self) -> PersistedState:
        state = PersistedState()
        raw = self._cf.get(HARD_STATE_KEY)
        if raw is not None:
            state.hard_state = decode_hard_state(raw)
        raw = self._cf.get(SNAPSHOT_KEY)
        first = 1
        if raw is not None:
            index, term = _TWO_U64.unpack_from(raw)
            state.snapshot = Snapshot(index, term, raw[_TWO_U64.size :], self._cf.get(SNAPSHOT_CONFIG_KEY) or b"")
            first = index + 1
        for key, value in self._cf.items(entry_key(first), entry_key(_MAX_INDEX)):
            index = _U64.unpack_from(key, 1)[0]
            (term,) = _U64.unpack_from(value)
            state.entries.append(Entry(term, index, value[_U64.size :]))
        return state

    def persist(self, ready: Ready) -> None:
        """Writes what the Ready asks to persist in one synced batch (nothing if it asks nothing)."""
        if not ready.must_sync:
            return
        batch = WriteBatch()
        if ready.snapshot is not None:
            # An installed snapshot replaces the whole log.
            batch.delete_range(self._cf, entry_key(0), entry_key(_MAX_INDEX))
            self._put_snapshot(batch, ready.snapshot)
        if ready.truncate_from is not None:
            batch.delete_range(self._cf, entry_key(ready.truncate_from), entry_key(_MAX_INDEX))
        for entry in ready.entries:
            batch.put(self._cf, entry_key(entry.index), _U64.pack(entry.term) + entry.data)
        if ready.hard_state is not None:
            batch.put(self._cf, HARD_STATE_KEY, encode_hard_state(ready.hard_state))
        self._store.write(batch, sync=True)

    def _put_snapshot(self, batch: WriteBatch, snapshot: Snapshot) -> None:
        batch.put(self._cf, SNAPSHOT_KEY, _TWO_U64.pack(snapshot.index, snapshot.term) + snapshot.data)
        if snapshot.config:
            batch.put(self._cf, SNAPSHOT_CONFIG_KEY, snapshot.config)
        else:
            batch.delete(self._cf, SNAPSHOT_CONFIG_KEY)

    def compact(self, snapshot: Snapshot) -> None:
        """Stores a snapshot the application took and drops the entries it covers."""
        batch = WriteBatch()
        self._put_snapshot(batch, snapshot)
        batch.delete_range(self._cf, entry_key(0), entry_key(snapshot.index + 1))
        self._store.write(batch, sync=True)
