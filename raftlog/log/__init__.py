"""Partition storage: Kafka RecordBatch v2 codec, segments with indexes, recovery, retention, compaction.

No dependency on Raft or replication; the broker reaches it through
raftlog.replication.log_adapter.
"""

from raftlog.log import scrubber  # noqa: E402, I001 - after partition_log, which it uses
from raftlog.log.config import LogConfig, TopicSettings
from raftlog.log.errors import CorruptRecordError, LogError, OffsetOutOfRangeError
from raftlog.log.partition_log import AppendResult, GroupCommit, PartitionLog, partition_directory

__all__ = [
    "AppendResult",
    "CorruptRecordError",
    "GroupCommit",
    "LogConfig",
    "LogError",
    "OffsetOutOfRangeError",
    "PartitionLog",
    "TopicSettings",
    "partition_directory",
    "scrubber",
]
