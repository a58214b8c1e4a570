"""Idempotent-producer sequence checks for one partition (pure; Kafka's ProducerStateManager).

For each producer id the leader keeps the epoch and the last few appended batches
(first/last sequence, first/last offset). A retried batch whose sequences match one of
them is a duplicate and is acknowledged with its original offset; a batch that does not
continue the sequence is refused with OUT_OF_ORDER_SEQUENCE_NUMBER; an older epoch is
fenced. Up to MAX_INFLIGHT_BATCHES batches are remembered, matching the producer's
max.in.flight.requests.per.connection of 5.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from raftlog.errors import RaftlogError
from raftlog.limits import PRODUCER_MAX_INFLIGHT_BATCHES as MAX_INFLIGHT_BATCHES

NO_PRODUCER_ID = -1
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class BatchMeta:
    first_seq: int
    last_seq: int
    first_offset: int
    last_offset: int


@dataclass
class ProducerEntry:
    epoch: int
    batches: deque = field(default_factory=lambda: deque(maxlen=MAX_INFLIGHT_BATCHES))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


def _next_seq(seq: int) -> int:
    return 0 if seq == INT32_MAX else seq + 1


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}

    def check(self, producer_id: int, epoch: int, first_seq: int, last_seq: int) -> BatchMeta | None:
        """Validates a batch before append: its original BatchMeta if it is a duplicate, else None.

        Raises RaftlogError for a fenced epoch or a sequence gap.
        """
        if producer_id == NO_PRODUCER_ID:
            return None
        entry = self.producers.get(producer_id)
        if entry is None:
            if first_seq != 0:
                raise RaftlogError("UNKNOWN_PRODUCER_ID", f"no state for producer {producer_id}; expected sequence 0")
            return None
        if epoch < entry.epoch:
            raise RaftlogError("INVALID_PRODUCER_EPOCH", f"producer {producer_id} epoch {epoch} < {entry.epoch}")
        if epoch > entry.epoch:
            if first_seq != 0:
                raise RaftlogError("OUT_OF_ORDER_SEQUENCE_NUMBER", "a new epoch must start at sequence 0")
            return None
        for batch in entry.batches:
            if batch.first_seq == first_seq and batch.last_seq == last_seq:
                return batch
        expected = _next_seq(entry.last_seq)
        if first_seq != expected:
            raise RaftlogError(
                "OUT_OF_ORDER_SEQUENCE_NUMBER",
                f"producer {producer_id} sent sequence {first_seq}, expected {expected}",
            )
        return None

    def is_ahead(self, producer_id: int, epoch: int, first_seq: int) -> bool:
        """True when the batch starts beyond the next expected sequence (earlier ones are missing)."""
        if producer_id == NO_PRODUCER_ID or first_seq < 0:
            return False
        entry = self.producers.get(producer_id)
        if entry is None:
            return first_seq > 0
        return epoch == entry.epoch and first_seq > _next_seq(entry.last_seq)

    def record(
        self, producer_id: int, epoch: int, first_seq: int, last_seq: int, first_offset: int, last_offset: int
    ) -> None:
        """Remembers an appended batch (on the leader after append, on followers and recovery while reading)."""
        if producer_id == NO_PRODUCER_ID:
            return
        entry = self.producers.get(producer_id)
        if entry is None or epoch > entry.epoch:
            entry = self.producers[producer_id] = ProducerEntry(epoch)
        entry.batches.append(BatchMeta(first_seq, last_seq, first_offset, last_offset))

    def to_json(self) -> str:
        return json.dumps(
            {
                str(pid): {
                    "epoch": e.epoch,
                    "batches": [[b.first_seq, b.last_seq, b.first_offset, b.last_offset] for b in e.batches],
                }
                for pid, e in self.producers.items()
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ProducerStateTable:
        table = cls()
        for pid, data in json.loads(text).items():
            entry = ProducerEntry(data["epoch"])
            entry.batches.extend(BatchMeta(*b) for b in data["batches"])
            table.producers[int(pid)] = entry
        return table
