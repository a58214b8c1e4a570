"""RocksDB (rocksdict) store shared by the Raft state, the metadata snapshots and the consumer offsets."""

from raftlog.store.rocks import ColumnFamily, Store, WriteBatch

__all__ = ["ColumnFamily", "Store", "WriteBatch"]
