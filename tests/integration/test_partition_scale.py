"""Partition scale on real processes (issue 13 §5): a node keeps at most log.open.files.max
segment and index files open however many partitions it hosts, and every partition still takes
and serves records (its closed files reopen on use). Before, each replica held its `.log` (and,
once written, its two indexes) open for good: 300 partitions were 300 to 900 descriptors."""

from __future__ import annotations

import os
import time

import pytest

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 300
OPEN_FILES_MAX = 40
TOPIC = "many"


def log_files_open(pid: int, partitions_dir) -> int:
    """The node's descriptors open on segment or index files of the topic."""
    prefix = f"{partitions_dir}/{TOPIC}-"
    count = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith(prefix) and target.endswith((".log", ".index", ".timeindex")):
            count += 1
    return count


def test_hundreds_of_partitions_work_under_a_small_open_file_limit(make_cluster):
    cluster = make_cluster(extra_config={"log.open.files.max": OPEN_FILES_MAX})
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin(timeout_ms=60_000) as admin:
        admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3)
        wait_until(
            lambda: all(len(p["isr"]) == 3 for p in admin.describe_topics([TOPIC])[0]["partitions"]),
            90,
            "a full ISR everywhere",
        )
    pids = {node_id: process.pid for node_id, process in cluster.processes.items()}
    dirs = {node_id: spec.partitions_dir for node_id, spec in cluster.specs.items()}

    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=5, request_timeout_ms=30_000)
    try:
        for round_ in range(2):  # the second round writes to files the cache closed meanwhile
            futures = [producer.send(TOPIC, b"%d-%d" % (p, round_), partition=p) for p in range(PARTITIONS)]
            producer.flush(120)
            for future in futures:
                future.result(5)
            for node_id, pid in pids.items():
                assert log_files_open(pid, dirs[node_id]) <= OPEN_FILES_MAX
    finally:
        producer.close(30)

    seen: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    with Consumer(cluster.bootstrap_servers, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + 120
        while sum(map(len, seen.values())) < 2 * PARTITIONS and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500):
                seen[record.partition].append(record.value)
    assert seen == {p: [b"%d-0" % p, b"%d-1" % p] for p in range(PARTITIONS)}
    for node_id, pid in pids.items():
        assert log_files_open(pid, dirs[node_id]) <= OPEN_FILES_MAX, f"node {node_id}"
