"""ReplicaLog: what replication needs from a partition log (raftlog.log), in one place.

Replication code calls only these methods, so the storage engine's API can evolve
without touching the replication rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class BatchHeader:
    base_offset: int
    last_offset: int
    partition_leader_epoch: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    max_timestamp: int

    @property
    def last_sequence(self) -> int:
        if self.base_sequence < 0:
            return -1
        return (self.base_sequence + self.record_count - 1) % (2**31)


@dataclass(frozen=True)
class AppendInfo:
    first_offset: int
    last_offset: int
    batches: list[BatchHeader] = field(default_factory=list)


class ReplicaLog(Protocol):
    log_start_offset: int
    log_end_offset: int

    def parse_headers(self, records: bytes) -> list[BatchHeader]: ...
    async def append_as_leader(self, records: bytes, leader_epoch: int) -> AppendInfo: ...
    async def append_as_follower(self, records: bytes) -> AppendInfo: ...
    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes: ...
    def assign_epoch(self, epoch: int, start_offset: int) -> None: ...
    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]: ...
    def latest_epoch(self) -> int: ...
    def truncate_to(self, offset: int) -> None: ...
    def truncate_fully_and_start_at(self, offset: int) -> None: ...
    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None: ...
    def read_high_watermark(self) -> int: ...
    def write_high_watermark(self, offset: int) -> None: ...
    def size_bytes(self) -> int: ...
    def close(self) -> None: ...
    def delete(self) -> None: ...


def open_replica_log(log_dirs, topic: str, partition: int, configs: dict[str, str]) -> ReplicaLog:
    raise RuntimeError("partition storage (raftlog.log) is not wired in yet")
