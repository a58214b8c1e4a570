"""The offset store: the records of ``__consumer_offsets`` partitions materialized in RocksDB.

Column family ``offsets``; per offsets partition P (big-endian int32):

- ``b"a" + P`` -> int64: the offset up to which P's records have been applied (exclusive);
- ``b"r" + P + record key`` -> record value: the newest value of each key (a tombstone deletes it).

Both move in one write batch, so the applied offset always says exactly what the rows hold. The
log is the source of truth: batches are written without fsync, and a store that lost its tail
in a crash simply applies that tail again from the log. Only committed records (below the high
watermark) are applied, so a follower's rows are never ahead of what a new coordinator keeps.
Blocking calls: callers run them on a worker thread.
"""

from __future__ import annotations

import struct

from raftlog.store import Store, WriteBatch

FAMILY = "offsets"
_PARTITION = struct.Struct(">i")
_OFFSET = struct.Struct(">q")


def _applied_key(partition: int) -> bytes:
    return b"a" + _PARTITION.pack(partition)


def _row_prefix(partition: int) -> bytes:
    return b"r" + _PARTITION.pack(partition)


class OffsetStore:
    def __init__(self, store: Store):
        self._store = store
        self._family = store.family(FAMILY)

    def applied_offset(self, partition: int) -> int:
        raw = self._family.get(_applied_key(partition))
        return 0 if raw is None else _OFFSET.unpack(raw)[0]

    def load(self, partition: int) -> tuple[int, list[tuple[bytes, bytes]]]:
        """(applied offset, [(record key, value)]) of one offsets partition."""
        # The applied offset first: the materializer may move on between the two reads, and
        # rows newer than the offset read are harmless (the caller replays the log from that
        # offset, and applying a record again gives each key its newest value once more).
        applied = self.applied_offset(partition)
        prefix = _row_prefix(partition)
        rows = [(key[len(prefix) :], value) for key, value in self._family.items(prefix, _row_prefix(partition + 1))]
        return applied, rows

    def apply(self, partition: int, records: list[tuple[bytes, bytes | None]], applied_offset: int) -> None:
        """Applies records (in log order) and moves the applied offset, atomically."""
        previous = self.applied_offset(partition)
        assert applied_offset >= previous, (
            f"offsets partition {partition}: applied offset would go back from {previous} to {applied_offset}"
        )
        batch = WriteBatch()
        prefix = _row_prefix(partition)
        for key, value in records:
            if value is None:
                batch.delete(self._family, prefix + key)
            else:
                batch.put(self._family, prefix + key, value)
        batch.put(self._family, _applied_key(partition), _OFFSET.pack(applied_offset))
        self._store.write(batch, sync=False)

    def drop(self, partition: int) -> None:
        """Forgets an offsets partition this broker no longer hosts."""
        batch = WriteBatch()
        batch.delete_range(self._family, _row_prefix(partition), _row_prefix(partition + 1))
        batch.delete(self._family, _applied_key(partition))
        self._store.write(batch, sync=False)
