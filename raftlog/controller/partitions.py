"""Partition leadership and ISR rules, as pure functions returning PartitionChangeRecords.

- A leader is chosen in replica-list order among ISR members that are unfenced brokers;
  only a topic with unclean.leader.election.enable may pick an out-of-sync replica.
- The ISR never becomes empty: its last member stays, so the controller always knows which
  replica holds every acknowledged record (the partition is offline until it returns).
- AlterPartition from a leader is fenced by leader epoch and partition epoch; a replica
  joining the ISR must be an unfenced broker (KIP-841).
- Reassignment (KIP-455): replicas = target + current while the new ones catch up; once
  every target replica is in the ISR, the extra replicas are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import NO_LEADER, PartitionInfo
from raftlog.v1 import metadata_pb2


def _first_usable(candidates: tuple[int, ...] | list[int], allowed: set[int]) -> int:
    return next((r for r in candidates if r in allowed), NO_LEADER)


def _change(partition: PartitionInfo, leader: int, isr: list[int]) -> list[metadata_pb2.MetadataRecord]:
    if leader == partition.leader and tuple(isr) == partition.isr:
        return []
    return [
        records.partition_change(
            partition.topic_id,
            partition.partition,
            leader=leader if leader != partition.leader else None,
            isr=isr if tuple(isr) != partition.isr else None,
        )
    ]


def on_broker_fenced(
    partition: PartitionInfo, broker_id: int, usable: set[int], unclean_allowed: bool
) -> list[metadata_pb2.MetadataRecord]:
    """The broker is gone: drop it from the ISR (unless last) and move its leadership."""
    if broker_id not in partition.replicas:
        return []
    isr = [r for r in partition.isr if r != broker_id] or list(partition.isr)
    leader = partition.leader
    if leader == broker_id or leader == NO_LEADER:
        leader = _first_usable([r for r in partition.replicas if r in isr], usable)
        if leader == NO_LEADER and unclean_allowed:
            leader = _first_usable(partition.replicas, usable)
            if leader != NO_LEADER:
                isr = [leader]  # unclean: the new leader's log is the truth from now on
    return _change(partition, leader, isr)


def on_replica_offline(
    partition: PartitionInfo, broker_id: int, usable: set[int], unclean_allowed: bool
) -> list[metadata_pb2.MetadataRecord]:
    """The broker reports it cannot serve this replica (its log dir failed, or its log is being
    repaired after corruption): for this partition it is as good as fenced. Its leadership
    moves inside the ISR and it leaves the ISR (unless it is the last member: the partition is
    then offline until it returns, as for a fenced broker)."""
    return on_broker_fenced(partition, broker_id, usable - {broker_id}, unclean_allowed)


def on_broker_unfenced(
    partition: PartitionInfo, broker_id: int, usable: set[int], unclean_allowed: bool
) -> list[metadata_pb2.MetadataRecord]:
    """An offline partition gets a leader back when an ISR member (or, if allowed, any replica) returns."""
    if partition.leader != NO_LEADER or broker_id not in partition.replicas:
        return []
    leader = _first_usable([r for r in partition.replicas if r in partition.isr], usable)
    isr = list(partition.isr)
    if leader == NO_LEADER and unclean_allowed:
        leader, isr = broker_id, [broker_id]
    return _change(partition, leader, isr)


def elect_preferred(partition: PartitionInfo, usable: set[int]) -> list[metadata_pb2.MetadataRecord]:
    preferred = partition.preferred_leader
    if partition.leader == preferred:
        raise RaftlogError("ELECTION_NOT_NEEDED", "the preferred replica already leads")
    if preferred not in partition.isr or preferred not in usable:
        raise RaftlogError("PREFERRED_LEADER_NOT_AVAILABLE", f"replica {preferred} is not in the ISR or is fenced")
    return _change(partition, preferred, list(partition.isr))


def elect_unclean(partition: PartitionInfo, usable: set[int]) -> list[metadata_pb2.MetadataRecord]:
    if partition.leader != NO_LEADER:
        raise RaftlogError("ELECTION_NOT_NEEDED", "the partition has a leader")
    leader = _first_usable([r for r in partition.replicas if r in partition.isr], usable)
    if leader != NO_LEADER:
        return _change(partition, leader, list(partition.isr))
    leader = _first_usable(partition.replicas, usable)
    if leader == NO_LEADER:
        raise RaftlogError("ELIGIBLE_LEADERS_NOT_AVAILABLE", "no replica of the partition is on an unfenced broker")
    return _change(partition, leader, [leader])


@dataclass(frozen=True)
class AlterPartitionRequest:
    broker_id: int
    leader_epoch: int
    partition_epoch: int
    new_isr: tuple[int, ...]


def alter_partition(
    partition: PartitionInfo, request: AlterPartitionRequest, usable: set[int]
) -> list[metadata_pb2.MetadataRecord]:
    """An ISR change asked for by the partition leader."""
    if request.broker_id != partition.leader:
        raise RaftlogError("NOT_LEADER_OR_FOLLOWER", f"broker {request.broker_id} does not lead this partition")
    if request.leader_epoch != partition.leader_epoch:
        raise RaftlogError(
            "FENCED_LEADER_EPOCH", f"leader epoch {request.leader_epoch} is not the current {partition.leader_epoch}"
        )
    if request.partition_epoch != partition.partition_epoch:
        raise RaftlogError(
            "INVALID_UPDATE_VERSION",
            f"partition epoch {request.partition_epoch} is not the current {partition.partition_epoch}",
        )
    new_isr = list(dict.fromkeys(request.new_isr))
    if partition.leader not in new_isr or not set(new_isr) <= set(partition.replicas):
        raise RaftlogError("INVALID_REQUEST", "the ISR must hold the leader and only replicas of the partition")
    joining = set(new_isr) - set(partition.isr)
    if joining - usable:
        raise RaftlogError("INELIGIBLE_REPLICA", f"replicas {sorted(joining - usable)} are fenced")
    isr_ordered = [r for r in partition.replicas if r in new_isr]
    changes = _change(partition, partition.leader, isr_ordered)
    return changes + _finish_reassignment(partition, isr_ordered, usable)


def start_reassignment(
    partition: PartitionInfo, target: list[int], live: set[int]
) -> list[metadata_pb2.MetadataRecord]:
    if not target or len(set(target)) != len(target):
        raise RaftlogError("INVALID_REPLICA_ASSIGNMENT", "target replicas must be non-empty and distinct")
    if set(target) - live:
        raise RaftlogError("INVALID_REPLICA_ASSIGNMENT", f"brokers {sorted(set(target) - live)} are not registered")
    if partition.adding_replicas or partition.removing_replicas:
        raise RaftlogError("REASSIGNMENT_IN_PROGRESS", "a reassignment of this partition is already running")
    if list(partition.replicas) == target:
        return []
    adding = [r for r in target if r not in partition.replicas]
    removing = [r for r in partition.replicas if r not in target]
    replicas = target + removing
    change = records.partition_change(
        partition.topic_id, partition.partition, replicas=replicas, adding_replicas=adding, removing_replicas=removing
    )
    if not adding:  # nothing to catch up: finish at once
        reassigned = PartitionInfo(
            partition.topic_id,
            partition.partition,
            tuple(replicas),
            partition.isr,
            partition.leader,
            partition.leader_epoch,
            partition.partition_epoch + 1,
            (),
            tuple(removing),
        )
        return [change] + _finish_reassignment(reassigned, list(partition.isr), live)
    return [change]


def _finish_reassignment(
    partition: PartitionInfo, isr: list[int], usable: set[int]
) -> list[metadata_pb2.MetadataRecord]:
    """Completes a reassignment once every target replica is in the ISR."""
    if not partition.adding_replicas and not partition.removing_replicas:
        return []
    target = [r for r in partition.replicas if r not in partition.removing_replicas]
    if not set(target) <= set(isr):
        return []
    new_isr = [r for r in target if r in isr]
    leader = partition.leader if partition.leader in target else _first_usable(new_isr, usable)
    return [
        records.partition_change(
            partition.topic_id,
            partition.partition,
            leader=leader if leader != partition.leader else None,
            isr=new_isr,
            replicas=target,
            adding_replicas=[],
            removing_replicas=[],
        )
    ]
