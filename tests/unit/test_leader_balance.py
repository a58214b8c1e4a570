"""Automatic leader balance (raftlog/controller/leader_balance.py): which preferred-leader
elections the active controller makes, as Kafka's auto.leader.rebalance.enable does."""

from __future__ import annotations

import pytest

from raftlog.controller import leader_balance
from raftlog.metadata import records
from raftlog.metadata.image import MetadataImage
from raftlog.v1 import metadata_pb2

TOPIC_ID = b"t" * 16


def cluster_image(leaders: list[int], brokers=(1, 2, 3), fenced=()) -> MetadataImage:
    """A topic of len(leaders) partitions on brokers 1-3, partition i preferring broker i%3+1
    (replicas rotated as placement does), led by leaders[i], every replica in the ISR."""
    image = MetadataImage()
    offset = 1
    for broker in brokers:
        for record in (records.register_broker(broker, f"inc{broker}", "h", 9000 + broker),):
            image.apply_batch(offset, metadata_pb2.MetadataBatch(records=[record]))
            epoch = offset
            offset += 1
        image.apply_batch(
            offset, metadata_pb2.MetadataBatch(records=[records.broker_fencing(broker, epoch, broker in fenced)])
        )
        offset += 1
    batch = [records.topic("balance", TOPIC_ID)]
    for index, leader in enumerate(leaders):
        first = index % 3
        replicas = [brokers[(first + k) % 3] for k in range(3)]
        batch.append(records.partition(TOPIC_ID, index, replicas, leader))
    image.apply_batch(offset, metadata_pb2.MetadataBatch(records=batch))
    return image


def usable_unfenced(image: MetadataImage):
    unfenced = {b.broker_id for b in image.brokers.values() if not b.fenced}
    return lambda partition: unfenced


def elected(changes) -> dict[int, int]:
    return {r.partition_change.partition: r.partition_change.leader for r in changes}


def test_a_broker_back_from_a_restart_gets_its_preferred_leaderships_back():
    # Broker 1 was away: partitions 0 and 3 (preferred 1) moved to their next replica, 2.
    image = cluster_image([2, 2, 3, 2, 2, 3])
    ratios = {b.broker_id: b.ratio for b in leader_balance.imbalance(image).values()}
    assert ratios == {1: 1.0, 2: 0.0, 3: 0.0}
    assert elected(leader_balance.rebalance(image, 10, usable_unfenced(image), 1000)) == {0: 1, 3: 1}


def test_a_balanced_cluster_needs_no_election():
    image = cluster_image([1, 2, 3, 1, 2, 3])
    assert leader_balance.rebalance(image, 10, usable_unfenced(image), 1000) == []


def test_an_imbalance_at_or_below_the_percentage_is_left_alone():
    # Broker 1 is preferred for 4 of 12 partitions and leads 3 of them: ratio 25%.
    leaders = [1, 2, 3] * 4
    leaders[0] = 2
    image = cluster_image(leaders)
    assert leader_balance.rebalance(image, 25, usable_unfenced(image), 1000) == []
    assert elected(leader_balance.rebalance(image, 24, usable_unfenced(image), 1000)) == {0: 1}


def test_a_fenced_or_out_of_sync_preferred_replica_is_not_elected():
    image = cluster_image([2, 2, 3, 2, 2, 3], fenced=(1,))
    assert leader_balance.rebalance(image, 10, usable_unfenced(image), 1000) == []
    image = cluster_image([2, 2, 3, 2, 2, 3])
    image.apply_batch(
        image.offset + 1,
        metadata_pb2.MetadataBatch(records=[records.partition_change(TOPIC_ID, 0, isr=[2, 3])]),
    )
    assert elected(leader_balance.rebalance(image, 10, usable_unfenced(image), 1000)) == {3: 1}


def test_a_replica_its_broker_reports_offline_is_not_elected():
    image = cluster_image([2, 2, 3, 2, 2, 3])
    assert elected(leader_balance.rebalance(image, 10, lambda p: {2, 3} if p.partition == 3 else {1, 2, 3}, 1000)) == {
        0: 1
    }


def test_a_partition_being_reassigned_is_left_alone():
    image = cluster_image([2, 2, 3, 2, 2, 3])
    image.apply_batch(
        image.offset + 1,
        metadata_pb2.MetadataBatch(
            records=[records.partition_change(TOPIC_ID, 0, replicas=[1, 2, 3, 4], adding_replicas=[4])]
        ),
    )
    assert elected(leader_balance.rebalance(image, 10, usable_unfenced(image), 1000)) == {3: 1}


def test_one_round_makes_at_most_max_elections():
    image = cluster_image([2, 2, 3] * 4)
    assert len(leader_balance.rebalance(image, 10, usable_unfenced(image), 2)) == 2
    assert len(leader_balance.rebalance(image, 10, usable_unfenced(image), 1000)) == 4


@pytest.mark.parametrize("percentage", [-1, 101])
def test_the_percentage_is_a_percentage(percentage):
    image = cluster_image([1, 2, 3])
    with pytest.raises(AssertionError):
        leader_balance.rebalance(image, percentage, usable_unfenced(image), 10)
