"""Topics, produce and consume against real broker processes, with failures."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError
from raftlog.replication.fetcher import ACTIVE_S
from tests.integration.conftest import wait_until

pytestmark = pytest.mark.slow
FAST_ISR = {"replica.lag.time.max.ms": 1500, "broker.session.timeout.ms": 2500, "broker.heartbeat.interval.ms": 250}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=60)


def read_all(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 30, security: dict | None = None
) -> dict:
    """partition -> [(offset, value)] read from the beginning (security: the Consumer's TLS settings)."""
    seen = {p: [] for p in range(partitions)}
    consumer = Consumer(bootstrap, auto_offset_reset="earliest", **(security or {}))
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while sum(len(v) for v in seen.values()) < expected and time.monotonic() < deadline:
            for record in consumer.poll(timeout_ms=500):
                seen[record.partition].append((record.offset, record.value))
    finally:
        consumer.close()
    return seen


def test_topic_lifecycle_through_the_cli(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    bootstrap = cluster.bootstrap_servers
    created = cli(
        "topics",
        "create",
        "--topic",
        "orders",
        "--partitions",
        "3",
        "--replication-factor",
        "3",
        "--config",
        "retention.ms=3600000",
        "--bootstrap-server",
        bootstrap,
    )
    assert created.returncode == 0, created.stderr
    again = cli("topics", "create", "--topic", "orders", "--partitions", "1", "--bootstrap-server", bootstrap)
    assert again.returncode == 1 and "TOPIC_ALREADY_EXISTS" in again.stderr
    bad = cli("topics", "create", "--topic", "bad name!", "--bootstrap-server", bootstrap)
    assert bad.returncode == 1 and "INVALID_TOPIC_EXCEPTION" in bad.stderr
    assert json.loads(cli("topics", "list", "--output", "json", "--bootstrap-server", bootstrap).stdout) == ["orders"]
    [topic] = json.loads(
        cli("topics", "describe", "--topic", "orders", "--output", "json", "--bootstrap-server", bootstrap).stdout
    )
    assert topic["partition_count"] == 3 and topic["replication_factor"] == 3
    assert topic["configs"] == {"retention.ms": "3600000"}
    assert sorted(p["leader"] for p in topic["partitions"]) == [1, 2, 3]
    assert all(sorted(p["isr"]) == [1, 2, 3] for p in topic["partitions"])
    assert (
        cli("topics", "alter", "--topic", "orders", "--partitions", "4", "--bootstrap-server", bootstrap).returncode
        == 0
    )
    shrink = cli("topics", "alter", "--topic", "orders", "--partitions", "2", "--bootstrap-server", bootstrap)
    assert shrink.returncode == 1 and "INVALID_PARTITIONS" in shrink.stderr

    # describe while a broker is down: its replicas are offline and leave the ISR
    cluster.kill_node(3)
    wait_until(
        lambda: all(
            3 not in p["isr"]
            for p in json.loads(
                cli(
                    "topics",
                    "describe",
                    "--topic",
                    "orders",
                    "--output",
                    "json",
                    "--bootstrap-server",
                    cluster.specs[1].address,
                ).stdout
            )[0]["partitions"]
        ),
        20,
        "broker 3 to leave every ISR",
    )
    under = json.loads(
        cli(
            "topics",
            "describe",
            "--under-replicated-partitions",
            "--output",
            "json",
            "--bootstrap-server",
            cluster.specs[1].address,
        ).stdout
    )
    assert len(under[0]["partitions"]) == 4
    assert all(p["leader"] in (1, 2) and 3 in p["offline_replicas"] for p in under[0]["partitions"])

    data_dirs = [cluster.specs[i].home / "data" for i in (1, 2)]
    assert any((d / "orders-0").exists() for d in data_dirs)
    deleted = cli("topics", "delete", "--topic", "orders", "--bootstrap-server", cluster.specs[1].address)
    assert deleted.returncode == 0, deleted.stderr
    wait_until(
        lambda: not any((d / f"orders-{p}").exists() for d in data_dirs for p in range(4)),
        15,
        "the topic's data to be removed from disk",
    )


def test_acks_all_produce_and_consume_round_trip(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("events", partitions=2, replication_factor=3, config={"min.insync.replicas": "2"})
    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=2)
    futures = [producer.send("events", b"v%d" % i, key=b"k%d" % (i % 10)) for i in range(500)]
    producer.flush()
    acked = [f.result(10) for f in futures]
    producer.close()
    by_key_partition = {}
    for i, metadata in enumerate(acked):
        by_key_partition.setdefault(b"k%d" % (i % 10), set()).add(metadata.partition)
    assert all(len(parts) == 1 for parts in by_key_partition.values())  # a key always maps to one partition
    seen = read_all(cluster.bootstrap_servers, "events", 2, 500)
    values = [v for p in seen.values() for _, v in p]
    assert sorted(values) == sorted(b"v%d" % i for i in range(500))
    for records in seen.values():
        offsets = [o for o, _ in records]
        assert offsets == list(range(len(offsets)))
    # position() is the next offset poll() hands out, even when a fetch brought more (Kafka's rule).
    tp = TopicPartition("events", 0)
    with Consumer(cluster.bootstrap_servers, max_poll_records=10) as consumer:
        consumer.assign([tp])
        first = wait_until(lambda: consumer.poll(timeout_ms=500), 10, "records")
        assert consumer.position(tp) == first[-1].offset + 1 == 10
        consumer.seek(tp, 3)
        assert consumer.position(tp) == 3 and consumer.poll(timeout_ms=2000)[0].offset == 3

    # A topic config altered while the partition's logs are open takes effect without a restart.
    def segment_counts() -> list[int]:
        return [len(list((cluster.data_dir / f"node-{i}" / "data" / "events-0").glob("*.log"))) for i in (1, 2, 3)]

    assert segment_counts() == [1, 1, 1]
    with cluster.admin() as admin:
        admin.alter_configs("topics", "events", set_configs={"segment.bytes": "1024"})
    producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=0)
    for _ in range(40):  # one 100-byte record per batch: a 1 KiB segment rolls every few batches
        producer.send("events", b"x" * 100, partition=0).result(10)
    producer.close()
    wait_until(lambda: min(segment_counts()) >= 3, 10, "every replica to roll at the new segment.bytes")


def test_min_isr_refuses_acks_all_when_two_brokers_are_down(make_cluster):
    cluster = make_cluster(extra_config=FAST_ISR)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("safe", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        leader = admin.describe_topics(["safe"])[0]["partitions"][0]["leader"]
    strict = Producer(cluster.specs[leader].address, acks="all", retries=0, delivery_timeout_ms=5000)
    loose = Producer(cluster.specs[leader].address, acks=1, retries=0)
    try:
        assert strict.send("safe", b"while-healthy").result(10).offset == 0
        for node_id in (i for i in cluster.specs if i != leader):
            cluster.kill_node(node_id)
        time.sleep(2.5)  # longer than replica.lag.time.max.ms: the followers are out of sync
        with pytest.raises(RaftlogError) as info:
            strict.send("safe", b"must-not-be-acked").result(10)
        assert info.value.reason in ("NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND", "REQUEST_TIMED_OUT")
        assert loose.send("safe", b"acks-1").result(10).offset >= 0
    finally:
        strict.close()
        loose.close()


def test_a_compacted_topic_keeps_the_latest_value_per_key_on_every_replica(make_cluster):
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic(
            "profiles",
            partitions=1,
            replication_factor=3,
            config={"cleanup.policy": "compact", "segment.bytes": "2048"},
        )
    latest: dict[bytes, bytes] = {}
    with Producer(cluster.bootstrap_servers, acks="all", linger_ms=0) as producer:
        for i in range(600):
            key, value = b"user-%d" % (i % 10), b"v%05d" % i
            latest[key] = value
            producer.send("profiles", value, key=key).result(10)

    def compacted_view() -> dict | None:
        records = read_all(cluster.bootstrap_servers, "profiles", 1, 600, timeout_s=2)[0]
        return records if len(records) < 300 else None  # the cleaner has run on the leader

    records = wait_until(compacted_view, 30, "the broker's cleaner to compact the sealed segments")
    offsets = [offset for offset, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    view: dict = {}
    for _offset, value in records:  # read in offset order: the last one wins, as for a consumer
        view[b"user-%d" % (int(value[1:]) % 10)] = value
    assert view == latest
    for node_id in cluster.specs:  # every replica cleans its own copy
        directory = cluster.specs[node_id].home / "data" / "profiles-0"
        wait_until(lambda: (directory / "cleaner-offset-checkpoint").exists(), 30, f"node {node_id} to compact")


def test_a_record_after_a_quiet_spell_is_still_replicated(make_cluster):
    """Followers fetch partitions with recent records in a loop of their own (replication/
    fetcher.py); a partition quiet for ACTIVE_S goes back to the idle loop. That loop may be
    waiting with nothing to fetch (every partition was active): before the fix nobody fetched the
    partition again, and the next acks=all record was never acknowledged."""
    cluster = make_cluster()
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("quiet", 1, 3)
    with Producer(cluster.bootstrap_servers, acks="all") as producer:
        producer.send("quiet", b"before").result(20)
        time.sleep(ACTIVE_S + 2.0)  # long enough for the partition to leave the active loop
        for i in range(3):
            producer.send("quiet", b"after-%d" % i).result(20)
    seen = read_all(cluster.bootstrap_servers, "quiet", 1, expected=4)
    assert [value for _, value in seen[0]] == [b"before", b"after-0", b"after-1", b"after-2"]
