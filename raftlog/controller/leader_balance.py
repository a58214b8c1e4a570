"""Automatic preferred-leader balance (Kafka's auto.leader.rebalance.enable), as pure functions.

A partition's preferred leader is the first of its replicas; placement spreads those evenly, so a
cluster whose partitions are led by their preferred replicas spreads its leaders evenly. After a
broker returns from a restart it leads nothing: its leaderships moved to other ISR members while
it was away and stay there. Kafka's controller checks, every
leader.imbalance.check.interval.seconds, per broker, the share of the partitions it is preferred for
that it does not lead (its imbalance ratio); for a broker whose ratio is above
leader.imbalance.per.broker.percentage it elects the preferred replica of each such partition
where that replica is in the ISR and its broker is unfenced. This module decides which; the
active controller (`ActiveController._balance_decision`, a periodic decision) runs it and commits the records.

Partitions being reassigned are left alone (their replica list is about to change), as Kafka does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from raftlog.metadata import records
from raftlog.metadata.image import NO_LEADER, MetadataImage, PartitionInfo
from raftlog.v1 import metadata_pb2


@dataclass(frozen=True, slots=True)
class BrokerImbalance:
    broker_id: int
    preferred_count: int  # partitions whose first replica is this broker
    not_leading: tuple[PartitionInfo, ...]  # of those, the ones it does not lead

    @property
    def ratio(self) -> float:
        return len(self.not_leading) / self.preferred_count if self.preferred_count else 0.0


def _settled(partitions: Iterable[PartitionInfo]) -> Iterable[PartitionInfo]:
    """Partitions with a preferred replica and no reassignment in progress."""
    return (p for p in partitions if p.replicas and not p.adding_replicas and not p.removing_replicas)


def imbalance(image: MetadataImage) -> dict[int, BrokerImbalance]:
    """Per broker that is some partition's preferred leader: how many, and which it does not lead."""
    preferred: dict[int, int] = {}
    not_leading: dict[int, list[PartitionInfo]] = {}
    for topic in image.topics_by_id.values():
        for partition in _settled(topic.partitions.values()):
            broker = partition.preferred_leader
            preferred[broker] = preferred.get(broker, 0) + 1
            if partition.leader != broker:
                not_leading.setdefault(broker, []).append(partition)
    return {
        broker: BrokerImbalance(broker, count, tuple(not_leading.get(broker, ())))
        for broker, count in sorted(preferred.items())
    }


def rebalance(
    image: MetadataImage,
    percentage: int,
    usable_for: Callable[[PartitionInfo], set[int]],
    max_elections: int,
) -> list[metadata_pb2.MetadataRecord]:
    """Preferred-leader elections for every broker whose imbalance ratio exceeds percentage (0-100):
    for each partition it is preferred for but does not lead, where it is in the ISR and usable
    (unfenced, and serving that replica: `usable_for(partition)`). At most max_elections records."""
    assert 0 <= percentage <= 100, f"leader.imbalance.per.broker.percentage {percentage} (config checks the range)"
    assert max_elections >= 1, f"max_elections {max_elections}"
    changes: list[metadata_pb2.MetadataRecord] = []
    for broker in imbalance(image).values():
        if broker.ratio * 100 <= percentage:
            continue
        for partition in broker.not_leading:
            if len(changes) >= max_elections:
                return changes
            if broker.broker_id in partition.isr and broker.broker_id in usable_for(partition):
                assert partition.leader != broker.broker_id and broker.broker_id != NO_LEADER
                changes.append(
                    records.partition_change(partition.topic_id, partition.partition, leader=broker.broker_id)
                )
    return changes
