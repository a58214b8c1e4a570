"""One request must not take a node down (issue 9 §6), on real processes: a topic with the most
partitions one request may create, then its deletion, while an unrelated acks=all producer goes on.
Before, one CreateTopic of 10,000 partitions made every admin call and that producer time out for
minutes, and deleting it set off an election storm (brokers missed their sessions)."""

from __future__ import annotations

import pytest

from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError
from raftlog.limits import MAX_PARTITIONS_CREATED_PER_REQUEST
from tests.integration.conftest import describe_partition, wait_until

pytestmark = pytest.mark.slow

RECORDS = 200


def produce_some(producer: Producer, tag: str) -> None:
    futures = [producer.send("small", b"%s-%04d" % (tag.encode(), i), partition=0) for i in range(RECORDS)]
    producer.flush(60)
    for future in futures:
        future.result(5)  # raises if the send failed


def leader_epochs(cluster, topic: str) -> list[int]:
    with cluster.admin(timeout_ms=10_000) as admin:
        return [p["leader_epoch"] for p in admin.describe_topics([topic])[0]["partitions"]]


def test_the_biggest_topic_one_request_may_create_and_delete_stalls_nothing(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("small", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        with pytest.raises(RaftlogError) as refused:
            admin.create_topic("huge", partitions=10_000, replication_factor=3)
        assert refused.value.reason == "INVALID_PARTITIONS"
    wait_until(lambda: len(describe_partition(cluster, "small")["isr"]) == 3, 30, "the full ISR of small")
    small_before = describe_partition(cluster, "small")

    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=5, request_timeout_ms=10_000)
    try:
        produce_some(producer, "warm")
        with cluster.admin(timeout_ms=30_000) as admin:
            admin.create_topic("big", partitions=MAX_PARTITIONS_CREATED_PER_REQUEST, replication_factor=3)
        produce_some(producer, "during-create")  # while every broker opens its 1,000 logs
        wait_until(
            lambda: all(e == 0 for e in leader_epochs(cluster, "big")),
            120,
            "every partition of big led by its first leader",
        )
        with cluster.admin(timeout_ms=30_000) as admin:
            admin.delete_topic("big")
        produce_some(producer, "during-delete")
    finally:
        producer.close(30)
    small_after = describe_partition(cluster, "small")
    # No broker missed its session: leadership of the unrelated partition never moved.
    assert small_after["leader_epoch"] == small_before["leader_epoch"], (small_before, small_after)
    with cluster.admin() as admin:
        assert not any(b["fenced"] for b in admin.describe_cluster()["brokers"])
