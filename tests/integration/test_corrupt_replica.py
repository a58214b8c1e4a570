"""One flipped byte in a sealed segment of a follower (issue 9 §3): after its restart the broker
finds it (the scrubber, or a verified read once it leads), repairs the replica from the leader,
and a consumer reading from it as leader gets every record, never a CRC error."""

from __future__ import annotations

import time

import pytest

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.log import LogConfig, PartitionLog
from raftlog.log.record_batch import HEADER_SIZE, iter_batches
from tests.integration.conftest import describe_partition, wait_until

pytestmark = pytest.mark.slow
RECORDS = 300
FAST = {"replica.lag.time.max.ms": 1500, "broker.session.timeout.ms": 2500, "broker.heartbeat.interval.ms": 250}


def _flip_a_payload_byte(log_path) -> None:
    data = bytearray(log_path.read_bytes())
    position = 0
    for _ in range(2):  # the third batch of the segment
        position += int.from_bytes(data[position + 8 : position + 12], "big") + 12
    data[position + HEADER_SIZE + 5] ^= 0x10
    log_path.write_bytes(bytes(data))


def _stored_values(directory) -> list[tuple[int, bytes]]:
    log = PartitionLog(directory, LogConfig())
    try:
        out, offset = [], log.log_start_offset
        while offset < log.log_end_offset:
            for _, records in iter_batches(log.read(offset, 1 << 20, verify=True)):
                out += [(r.offset, r.value) for r in records if r.offset >= offset]
            offset = out[-1][0] + 1
        return out
    finally:
        log.close()


def test_a_follower_with_a_rotten_sealed_segment_is_repaired_and_serves_every_record(make_cluster):
    cluster = make_cluster(extra_config=FAST)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic(
            "rot", partitions=1, replication_factor=3, config={"min.insync.replicas": "2", "segment.bytes": "4096"}
        )
    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=0)
    try:
        for i in range(RECORDS):
            producer.send("rot", b"value-%04d-" % i + b"x" * 40, partition=0).result(10)
    finally:
        producer.close()
    state = describe_partition(cluster, "rot")
    follower = next(r for r in state["replicas"] if r != state["leader"])
    directory = cluster.data_dir / f"node-{follower}" / "data" / "rot-0"
    wait_until(lambda: len(list(directory.glob("*.log"))) > 3, 10, "the follower to have sealed segments")

    cluster.stop_node(follower)
    _flip_a_payload_byte(sorted(directory.glob("*.log"))[1])
    cluster.start_node(follower)
    wait_until(lambda: follower in describe_partition(cluster, "rot")["isr"], 30, "the follower to rejoin the ISR")

    # Make the repaired follower the leader, then read everything from it.
    others = [r for r in state["replicas"] if r != follower]
    with cluster.admin() as admin:
        admin.reassign_partition("rot", 0, [follower, *others])
        wait_until(lambda: describe_partition(cluster, "rot")["replicas"][0] == follower, 10, "the new replica order")
        wait_until(lambda: follower in describe_partition(cluster, "rot")["isr"], 30, "the follower in the ISR")
        admin.elect_leaders("preferred")
    wait_until(lambda: describe_partition(cluster, "rot")["leader"] == follower, 30, "the repaired replica to lead")
    seen = []
    with Consumer(cluster.bootstrap_servers, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("rot", 0)])
        deadline = time.monotonic() + 30
        while len(seen) < RECORDS and time.monotonic() < deadline:
            seen += [record.value for record in consumer.poll(timeout_ms=500)]
    assert seen == [b"value-%04d-" % i + b"x" * 40 for i in range(RECORDS)]

    wait_until(lambda: sorted(describe_partition(cluster, "rot")["isr"]) == sorted(state["replicas"]), 30, "a full ISR")
    cluster.stop()
    healthy = cluster.data_dir / f"node-{others[0]}" / "data" / "rot-0"
    assert _stored_values(directory) == _stored_values(healthy), "the follower's files were repaired"
