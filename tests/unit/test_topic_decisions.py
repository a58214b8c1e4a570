from collections import Counter

import pytest

from raftlog.controller import partitions as rules
from raftlog.controller import topics
from raftlog.errors import RaftlogError
from raftlog.metadata import records
from raftlog.metadata.image import NO_LEADER, MetadataImage
from raftlog.v1 import metadata_pb2


def apply(image: MetadataImage, new_records) -> None:
    image.apply_batch(image.offset + 1, metadata_pb2.MetadataBatch(records=list(new_records)))


def cluster(brokers=(1, 2, 3)) -> MetadataImage:
    image = MetadataImage()
    for broker_id in brokers:
        apply(image, [records.register_broker(broker_id, f"i{broker_id}", "127.0.0.1", 9000 + broker_id)])
        epoch = image.offset
        apply(image, [records.broker_fencing(broker_id, epoch, False)])
    return image


def reason_of(call) -> str:
    with pytest.raises(RaftlogError) as info:
        call()
    return info.value.reason


def test_create_topic_spreads_replicas_and_leaders_evenly():
    image = cluster((1, 2, 3))
    apply(image, topics.create_topic(image, "orders", 6, 3, {"cleanup.policy": "compact"}))
    apply(image, topics.create_topic(image, "events", 3, 2, {}))
    parts = [p for _, p in image.partitions()]
    assert len(parts) == 9
    assert Counter(p.leader for p in parts) == {1: 3, 2: 3, 3: 3}
    assert Counter(r for p in parts for r in p.replicas) == {1: 8, 2: 8, 3: 8}
    orders = image.topic("orders")
    assert all(p.isr == p.replicas and p.leader == p.replicas[0] for p in orders.partitions.values())
    assert image.dynamic_config("topics", "orders") == {"cleanup.policy": "compact"}


@pytest.mark.parametrize(
    "name, reason",
    [
        ("", "INVALID_TOPIC_EXCEPTION"),
        ("..", "INVALID_TOPIC_EXCEPTION"),
        ("a b", "INVALID_TOPIC_EXCEPTION"),
        ("x" * 250, "INVALID_TOPIC_EXCEPTION"),
        ("caf\u00e9", "INVALID_TOPIC_EXCEPTION"),
    ],
)
def test_topic_names_follow_kafka_rules(name, reason):
    assert reason_of(lambda: topics.create_topic(cluster(), name, 1, 1, {})) == reason


def test_create_topic_refusals():
    image = cluster((1, 2, 3))
    apply(image, topics.create_topic(image, "a.b", 1, 1, {}))
    assert reason_of(lambda: topics.create_topic(image, "a.b", 1, 1, {})) == "TOPIC_ALREADY_EXISTS"
    assert reason_of(lambda: topics.create_topic(image, "a_b", 1, 1, {})) == "INVALID_TOPIC_EXCEPTION"
    assert reason_of(lambda: topics.create_topic(image, "t", 1, 4, {})) == "INVALID_REPLICATION_FACTOR"
    assert reason_of(lambda: topics.create_topic(image, "t", 0, 1, {})) == "INVALID_PARTITIONS"
    assert reason_of(lambda: topics.create_topic(image, "t", 1, 1, {"retention.ms": "soon"})) == "INVALID_CONFIG"
    assert reason_of(lambda: topics.create_topic(image, "t", 1, 1, {"no.such": "1"})) == "INVALID_CONFIG"
    assert "t" not in image.topic_ids


def test_partitions_only_grow_and_delete_removes_everything():
    image = cluster()
    apply(image, topics.create_topic(image, "t", 2, 2, {"retention.ms": "1000"}))
    assert reason_of(lambda: topics.create_partitions(image, "t", 2)) == "INVALID_PARTITIONS"
    apply(image, topics.create_partitions(image, "t", 5))
    assert sorted(image.topic("t").partitions) == [0, 1, 2, 3, 4]
    assert all(len(p.replicas) == 2 for p in image.topic("t").partitions.values())
    apply(image, topics.delete_topic(image, "t"))
    assert image.topic("t") is None and image.dynamic_config("topics", "t") == {}
    assert reason_of(lambda: topics.delete_topic(image, "t")) == "UNKNOWN_TOPIC_OR_PARTITION"


def single_partition(image, replicas=(1, 2, 3)):
    apply(image, [records.topic("t", b"T" * 16), records.partition(b"T" * 16, 0, list(replicas), replicas[0])])
    return lambda: image.topic("t").partitions[0]


def test_fencing_the_leader_moves_leadership_within_the_isr_and_bumps_epochs():
    image = cluster()
    part = single_partition(image)
    apply(image, rules.on_broker_fenced(part(), 1, usable={2, 3}, unclean_allowed=False))
    assert (part().leader, part().isr, part().leader_epoch, part().partition_epoch) == (2, (2, 3), 1, 1)
    apply(image, rules.on_broker_fenced(part(), 3, usable={2}, unclean_allowed=False))
    assert (part().leader, part().isr, part().leader_epoch) == (2, (2,), 1)
    # the last ISR member stays in the ISR; the partition goes offline without unclean election
    apply(image, rules.on_broker_fenced(part(), 2, usable=set(), unclean_allowed=False))
    assert (part().leader, part().isr) == (NO_LEADER, (2,))
    # broker 3 (out of sync) returns: still offline; broker 2 returns: it leads again
    assert rules.on_broker_unfenced(part(), 3, usable={3}, unclean_allowed=False) == []
    apply(image, rules.on_broker_unfenced(part(), 2, usable={2, 3}, unclean_allowed=False))
    assert (part().leader, part().isr) == (2, (2,))


def test_unclean_election_only_when_enabled():
    image = cluster()
    part = single_partition(image)
    apply(image, rules.on_broker_fenced(part(), 2, usable={1, 3}, unclean_allowed=False))
    apply(image, rules.on_broker_fenced(part(), 3, usable={1}, unclean_allowed=False))
    apply(image, rules.on_broker_fenced(part(), 1, usable=set(), unclean_allowed=False))
    assert part().leader == NO_LEADER and part().isr == (1,)
    apply(image, rules.on_broker_unfenced(part(), 3, usable={3}, unclean_allowed=True))
    assert (part().leader, part().isr) == (3, (3,))


def test_alter_partition_is_fenced_by_epochs_and_checks_membership():
    image = cluster()
    part = single_partition(image)
    shrink = rules.AlterPartitionRequest(broker_id=1, leader_epoch=0, partition_epoch=0, new_isr=(1, 2))
    apply(image, rules.alter_partition(part(), shrink, usable={1, 2, 3}))
    assert part().isr == (1, 2) and part().partition_epoch == 1
    stale = rules.AlterPartitionRequest(1, 0, 0, (1, 2, 3))
    assert reason_of(lambda: rules.alter_partition(part(), stale, {1, 2, 3})) == "INVALID_UPDATE_VERSION"
    old_leader = rules.AlterPartitionRequest(1, -1, 1, (1, 2, 3))
    assert reason_of(lambda: rules.alter_partition(part(), old_leader, {1, 2, 3})) == "FENCED_LEADER_EPOCH"
    not_leader = rules.AlterPartitionRequest(2, 0, 1, (1, 2, 3))
    assert reason_of(lambda: rules.alter_partition(part(), not_leader, {1, 2, 3})) == "NOT_LEADER_OR_FOLLOWER"
    fenced_joiner = rules.AlterPartitionRequest(1, 0, 1, (1, 2, 3))
    assert reason_of(lambda: rules.alter_partition(part(), fenced_joiner, {1, 2})) == "INELIGIBLE_REPLICA"
    without_leader = rules.AlterPartitionRequest(1, 0, 1, (2, 3))
    assert reason_of(lambda: rules.alter_partition(part(), without_leader, {1, 2, 3})) == "INVALID_REQUEST"


def test_preferred_leader_election():
    image = cluster()
    part = single_partition(image)
    assert reason_of(lambda: rules.elect_preferred(part(), {1, 2, 3})) == "ELECTION_NOT_NEEDED"
    apply(image, rules.on_broker_fenced(part(), 1, usable={2, 3}, unclean_allowed=False))
    assert reason_of(lambda: rules.elect_preferred(part(), {1, 2, 3})) == "PREFERRED_LEADER_NOT_AVAILABLE"
    apply(image, rules.alter_partition(part(), rules.AlterPartitionRequest(2, 1, 1, (1, 2, 3)), {1, 2, 3}))
    apply(image, rules.elect_preferred(part(), {1, 2, 3}))
    assert part().leader == 1 and part().leader_epoch == 2


def test_reassignment_waits_for_new_replicas_then_drops_old_ones():
    image = cluster((1, 2, 3, 4))
    part = single_partition(image, replicas=(1, 2, 3))
    apply(image, rules.start_reassignment(part(), [4, 2, 3], live={1, 2, 3, 4}))
    assert part().replicas == (4, 2, 3, 1) and part().adding_replicas == (4,) and part().removing_replicas == (1,)
    assert part().leader == 1
    grow = rules.AlterPartitionRequest(1, part().leader_epoch, part().partition_epoch, (1, 2, 3, 4))
    apply(image, rules.alter_partition(part(), grow, usable={1, 2, 3, 4}))
    assert part().replicas == (4, 2, 3) and part().isr == (4, 2, 3)
    assert part().leader == 4 and part().adding_replicas == () and part().removing_replicas == ()
    assert reason_of(lambda: rules.start_reassignment(part(), [5], live={1, 2, 3, 4})) == "INVALID_REPLICA_ASSIGNMENT"


def test_partitions_created_per_request_are_bounded():
    """Issue 9 §6: one CreateTopic of 10,000 partitions stalled every node for minutes. One request
    creates at most MAX_PARTITIONS_CREATED_PER_REQUEST; a topic grows past that in steps."""
    from raftlog.limits import MAX_PARTITIONS_CREATED_PER_REQUEST as PER_REQUEST
    from raftlog.limits import MAX_PARTITIONS_PER_TOPIC

    image = cluster((1, 2, 3))
    assert reason_of(lambda: topics.create_topic(image, "big", 10_000, 3, {})) == "INVALID_PARTITIONS"
    assert reason_of(lambda: topics.create_topic(image, "big", PER_REQUEST + 1, 3, {})) == "INVALID_PARTITIONS"
    apply(image, topics.create_topic(image, "big", PER_REQUEST, 3, {}))
    assert reason_of(lambda: topics.create_partitions(image, "big", 2 * PER_REQUEST + 1)) == "INVALID_PARTITIONS"
    apply(image, topics.create_partitions(image, "big", 2 * PER_REQUEST))
    assert len(image.topic("big").partitions) == 2 * PER_REQUEST
    assert (
        reason_of(lambda: topics.create_partitions(image, "big", MAX_PARTITIONS_PER_TOPIC + 1)) == "INVALID_PARTITIONS"
    )
