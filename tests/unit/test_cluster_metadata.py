"""The client's leader view never moves back to an older leader epoch (a cut-off broker's stale
image), except for a topic that was deleted and created again."""

from raftlog.client.cluster_metadata import ClusterMetadata
from raftlog.v1 import broker_pb2


def topic(leader: int, epoch: int, topic_id: bytes = b"A" * 16) -> broker_pb2.TopicMetadata:
    return broker_pb2.TopicMetadata(
        name="t",
        topic_id=topic_id,
        partitions=[broker_pb2.PartitionMetadata(partition=0, leader=leader, leader_epoch=epoch)],
    )


def test_stale_metadata_does_not_move_a_leader_back():
    view = ClusterMetadata("127.0.0.1:1")
    view._brokers = {1: "h1:1", 2: "h2:1"}
    view._apply_topic(topic(leader=2, epoch=5))
    view._apply_topic(topic(leader=1, epoch=4))  # from a broker that missed the election
    assert (view._partitions["t"][0].leader_id, view._partitions["t"][0].leader_epoch) == (2, 5)
    view._apply_topic(topic(leader=1, epoch=6))
    assert view._partitions["t"][0].address == "h1:1"


def test_a_recreated_topic_starts_its_epochs_again():
    view = ClusterMetadata("127.0.0.1:1")
    view._brokers = {1: "h1:1", 2: "h2:1"}
    view._apply_topic(topic(leader=2, epoch=5))
    view._apply_topic(topic(leader=1, epoch=0, topic_id=b"B" * 16))
    assert view._partitions["t"][0].leader_id == 1
