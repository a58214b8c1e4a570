"""A thin wrapper over rocksdict: raw bytes keys/values, named column families, synced batches.

Each concept keeps its data in its own column family (``raft``, ``metadata``,
``offsets``), so one RocksDB instance per node holds them all and one synced
write batch can cover several families at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import rocksdict

COLUMN_FAMILIES = ("raft", "metadata", "offsets")


def _raw_options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    return options


class ColumnFamily:
    """Reads from one column family; writes go through a WriteBatch."""

    def __init__(self, name: str, rdict: rocksdict.Rdict, handle: rocksdict.ColumnFamily):
        self.name = name
        self._rdict = rdict
        self.handle = handle

    def get(self, key: bytes) -> bytes | None:
        return self._rdict.get(key)

    def items(self, start: bytes | None = None, end: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Key/value pairs with start <= key < end, in key order."""
        iterator = self._rdict.items(from_key=start) if start is not None else self._rdict.items()
        for key, value in iterator:
            assert isinstance(key, bytes), f"raftlog keys are bytes, found {key!r}"
            if end is not None and key >= end:
                return
            yield key, value

    def last_item(self, start: bytes, end: bytes) -> tuple[bytes, bytes] | None:
        """The pair with the largest key in [start, end), or None."""
        it = self._rdict.iter()
        try:
            it.seek_for_prev(end)
            while it.valid():
                key = it.key()
                if key < end:
                    return (key, it.value()) if key >= start else None
                it.prev()
            return None
        finally:
            del it


class WriteBatch:
    """An atomic group of writes across column families, applied by Store.write."""

    def __init__(self) -> None:
        self._batch = rocksdict.WriteBatch(raw_mode=True)
        self.count = 0

    def put(self, cf: ColumnFamily, key: bytes, value: bytes) -> None:
        self._batch.put(key, value, cf.handle)
        self.count += 1

    def delete(self, cf: ColumnFamily, key: bytes) -> None:
        self._batch.delete(key, cf.handle)
        self.count += 1

    def delete_range(self, cf: ColumnFamily, start: bytes, end: bytes) -> None:
        """Deletes keys in [start, end)."""
        self._batch.delete_range(start, end, cf.handle)
        self.count += 1


class Store:
    """One RocksDB instance with the project's column families."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        families = {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES}
        self._db = rocksdict.Rdict(str(self.path), _raw_options(), column_families=families)
        self._families = {
            name: ColumnFamily(name, self._db.get_column_family(name), self._db.get_column_family_handle(name))
            for name in COLUMN_FAMILIES
        }
        self._sync_options = rocksdict.WriteOptions()
        self._sync_options.sync = True
        self._async_options = rocksdict.WriteOptions()

    def family(self, name: str) -> ColumnFamily:
        return self._families[name]

    def write(self, batch: WriteBatch, sync: bool = True) -> None:
        """Applies the batch atomically; with sync=True it is on disk (fsynced WAL) when this returns."""
        if batch.count:
            self._db.write(batch._batch, self._sync_options if sync else self._async_options)

    def close(self) -> None:
        # Every column-family object keeps RocksDB alive; drop them before closing, so that
        # a ColumnFamily wrapper someone still holds cannot keep the DB (and its LOCK) open.
        for family in self._families.values():
            family._rdict = None  # type: ignore[assignment]  # closed: nothing may use it again
            family.handle = None  # type: ignore[assignment]
        self._families.clear()
        self._db.close()
        del self._db
