"""An in-memory ReplicaLog for exercising replication rules without disks.

Each "batch" is the bytes given to append; it holds one record. The leader-epoch cache
follows the same rules as the real log: (epoch, start offset) entries, truncated with the log.
"""

from __future__ import annotations

from raftlog.log.record_batch import BatchHeader
from raftlog.replication.log_adapter import AppendInfo


def header(offset: int, epoch: int) -> BatchHeader:
    return BatchHeader(offset, 61, epoch, 2, 0, 0, 0, 0, 0, -1, -1, -1, 1)


class FakeReplicaLog:
    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bytes]] = []  # (offset, epoch, payload)
        self.epochs: list[tuple[int, int]] = []  # (epoch, start offset)
        self.log_start_offset = 0
        self.hw = 0

    @property
    def log_end_offset(self) -> int:
        return self.batches[-1][0] + 1 if self.batches else self.log_start_offset

    def payloads(self) -> list[bytes]:
        return [p for _, _, p in self.batches]

    def parse_headers(self, records: bytes) -> list[BatchHeader]:
        return [header(0, -1)]

    def _append(self, payload: bytes, epoch: int) -> AppendInfo:
        offset = self.log_end_offset
        self.assign_epoch(epoch, offset)
        self.batches.append((offset, epoch, payload))
        return AppendInfo(offset, offset, [header(offset, epoch)])

    async def append_as_leader(self, records: bytes, leader_epoch: int, on_written=None) -> AppendInfo:
        info = self._append(records, leader_epoch)
        if on_written:
            on_written(info)
        return info

    async def append_as_follower(self, records: bytes, on_written=None) -> AppendInfo:
        # The fake "wire format" from read(): offset|epoch|payload lines.
        info = None
        for line in records.split(b"\n"):
            offset, epoch, payload = line.split(b"|", 2)
            assert int(offset) == self.log_end_offset, "followers append at their log end"
            info = self._append(payload, int(epoch))
        if on_written:
            on_written(info)
        return info

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> bytes:
        limit = self.log_end_offset if max_offset is None else max_offset
        lines = [b"%d|%d|%s" % (o, e, p) for o, e, p in self.batches if offset <= o < limit]
        return b"\n".join(lines)

    def assign_epoch(self, epoch: int, start_offset: int) -> None:
        if not self.epochs or epoch > self.epochs[-1][0]:
            self.epochs.append((epoch, start_offset))

    def latest_epoch(self) -> int:
        """From the epoch cache, as the real log answers (an epoch may hold no records yet)."""
        return self.epochs[-1][0] if self.epochs else -1

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        candidates = [i for i, (e, _) in enumerate(self.epochs) if e <= epoch]
        if not candidates:
            return (-1, -1)
        i = candidates[-1]
        end = self.epochs[i + 1][1] if i + 1 < len(self.epochs) else self.log_end_offset
        return (self.epochs[i][0], end)

    def truncate_to(self, offset: int) -> None:
        self.batches = [b for b in self.batches if b[0] < offset]
        self.epochs = [(e, s) for e, s in self.epochs if s < offset]

    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.batches, self.epochs, self.log_start_offset = [], [], offset

    def batch_headers(self):
        return iter([header(o, e) for o, e, _ in self.batches])

    def offset_for_timestamp(self, timestamp_ms: int):
        return None

    def read_high_watermark(self) -> int:
        return self.hw

    def write_high_watermark(self, offset: int) -> None:
        self.hw = offset

    def size_bytes(self) -> int:
        return sum(len(p) for _, _, p in self.batches)

    async def wait_durable(self, last_offset: int) -> None:
        pass

    async def persist(self) -> None:
        pass

    log_dir = None

    def set_failure_listener(self, listener) -> None:
        pass

    def take_offline(self, reason: str) -> None:
        pass

    durable_data_lost_at = None

    def cut_at_corruption(self, offset: int) -> None:
        self.truncate_to(offset)

    def set_corruption_listener(self, listener) -> None:
        pass

    has_sealed_segments = False

    async def scrub(self, cursor, max_bytes):
        from raftlog.log.scrubber import ScrubCursor, ScrubStep

        return ScrubStep(ScrubCursor(), 0, None)

    async def maintain(self, high_watermark: int, retention: bool = True, by_time: bool = True) -> None:
        pass

    async def follow_log_start(self, offset: int) -> None:
        pass

    def reconfigure(self, config) -> None:
        self.config = config

    def close(self) -> None:
        pass

    def delete(self) -> None:
        self.batches = []
