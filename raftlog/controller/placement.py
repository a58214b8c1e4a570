"""Replica placement for new partitions: spread replicas and leaders evenly over brokers.

Greedy and deterministic: each new partition's leader is the broker leading the fewest
partitions, its followers the brokers holding the fewest replicas (ties by broker id,
rotated by partition index so equal brokers share the load; followers tie-break on
the ring after the leader). Existing partitions count,
so adding a topic to a busy cluster evens it out rather than piling onto broker 1.
"""

from __future__ import annotations

from collections import Counter

from raftlog.errors import RaftlogError
from raftlog.metadata.image import MetadataImage


def current_load(image: MetadataImage) -> tuple[Counter, Counter]:
    """(replicas per broker, leaderships per broker) over every existing partition."""
    replicas: Counter[int] = Counter()
    leaders: Counter[int] = Counter()
    for _, partition in image.partitions():
        replicas.update(partition.replicas)
        if partition.replicas:
            leaders[partition.replicas[0]] += 1  # the preferred leader is what placement controls
    return replicas, leaders


def place_partitions(
    brokers: list[int], count: int, replication_factor: int, replicas_load: Counter, leaders_load: Counter
) -> list[list[int]]:
    """Replica lists (preferred leader first) for `count` new partitions."""
    if replication_factor < 1:
        raise RaftlogError("INVALID_REPLICATION_FACTOR", "replication factor must be at least 1")
    if replication_factor > len(brokers):
        raise RaftlogError(
            "INVALID_REPLICATION_FACTOR",
            f"replication factor {replication_factor} is larger than the {len(brokers)} available brokers",
        )
    replicas_load, leaders_load = Counter(replicas_load), Counter(leaders_load)
    ordered = sorted(brokers)
    assignments = []
    for index in range(count):
        rotated = ordered[index % len(ordered) :] + ordered[: index % len(ordered)]
        leader = min(rotated, key=lambda b: (leaders_load[b], replicas_load[b]))
        # Ties go to the brokers right after the leader in id order, as in Kafka's ring placement.
        after = ordered.index(leader) + 1
        ring = ordered[after:] + ordered[: after - 1]
        followers = sorted(ring, key=lambda b: replicas_load[b])
        replicas = [leader] + followers[: replication_factor - 1]
        leaders_load[leader] += 1
        replicas_load.update(replicas)
        assignments.append(replicas)
    return assignments
