"""Many partition reassignments in one request (KIP-455 AlterPartitionReassignments), pure.

Every entry is checked against the image before any record is made, so a request with one bad
entry (an unknown partition or broker, duplicate replicas, a partition already moving, a cancel
of a partition that is not moving) changes nothing: a plan is applied whole or not at all, which
is what an operator running a plan file expects. (Kafka answers per partition; its tool then
leaves the plan half started.) Unlike Kafka, a new target for a partition that is already moving
is refused (REASSIGNMENT_IN_PROGRESS): cancel it first.

Starting one partition's move and finishing it are in `partitions.py`; a cancel reverts to the
original replicas: the current replicas without those being added, as Kafka computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftlog.controller import partitions as partition_rules
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import NO_LEADER, MetadataImage, PartitionInfo
from raftlog.v1 import metadata_pb2


@dataclass(frozen=True, slots=True)
class ReassignmentEntry:
    topic: str
    partition: int
    replicas: tuple[int, ...]  # the target, preferred leader first; empty with cancel
    cancel: bool = False


def _find(image: MetadataImage, topic: str, index: int) -> PartitionInfo:
    info = image.topic(topic)
    if info is None or index not in info.partitions:
        raise RaftlogError("UNKNOWN_TOPIC_OR_PARTITION", f"{topic}-{index} does not exist")
    return info.partitions[index]


def is_moving(partition: PartitionInfo) -> bool:
    return bool(partition.adding_replicas or partition.removing_replicas)


def cancel_reassignment(partition: PartitionInfo, usable: set[int]) -> list[metadata_pb2.MetadataRecord]:
    """Reverts a running reassignment: the replicas being added leave, the ISR keeps only
    original replicas, and a leader that was being added hands over to an original in-sync one.
    Refused when no original replica is in sync (reverting would leave no replica known to hold
    every acknowledged record): let the move finish, or move again."""
    if not is_moving(partition):
        raise RaftlogError("NO_REASSIGNMENT_IN_PROGRESS", "no reassignment of this partition is running")
    original = [r for r in partition.replicas if r not in partition.adding_replicas]
    isr = [r for r in original if r in partition.isr]
    if not isr:
        raise RaftlogError(
            "INVALID_REPLICA_ASSIGNMENT",
            f"none of the original replicas {original} is in the ISR {list(partition.isr)}: cancelling would lose data",
        )
    leader = partition.leader
    if leader not in isr:
        leader = next((r for r in isr if r in usable), NO_LEADER)
    assert set(isr) <= set(original) and isr, f"a cancel keeps in-sync original replicas: {isr} of {original}"
    return [
        records.partition_change(
            partition.topic_id,
            partition.partition,
            leader=leader if leader != partition.leader else None,
            isr=isr,
            replicas=original,
            adding_replicas=[],
            removing_replicas=[],
        )
    ]


def alter_reassignments(
    image: MetadataImage, entries: list[ReassignmentEntry], registered: set[int], usable: set[int]
) -> list[metadata_pb2.MetadataRecord]:
    """The records that start (or cancel) every entry; raises on the first bad entry, so nothing
    of a bad request is applied. `registered`: brokers a target may name; `usable`: unfenced."""
    if not entries:
        raise RaftlogError("INVALID_REQUEST", "no partitions to reassign")
    seen: set[tuple[str, int]] = set()
    changes: list[metadata_pb2.MetadataRecord] = []
    for entry in entries:
        name = f"{entry.topic}-{entry.partition}"
        if (entry.topic, entry.partition) in seen:
            raise RaftlogError("INVALID_REQUEST", f"{name} appears more than once")
        seen.add((entry.topic, entry.partition))
        partition = _find(image, entry.topic, entry.partition)
        try:
            if entry.cancel:
                changes += cancel_reassignment(partition, usable)
            else:
                changes += partition_rules.start_reassignment(partition, list(entry.replicas), registered)
        except RaftlogError as exc:
            raise RaftlogError(exc.reason, f"{name}: {exc.message}") from None
    return changes
