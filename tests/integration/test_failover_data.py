"""acks=all under repeated kill -9 of the partition leader (on a plaintext cluster, and on one with
TLS, mutual TLS between nodes and ACLs, the client a user with only the ACLs it needs), and ISR
shrink/expand with SIGSTOP."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from raftlog.client.producer import Producer
from raftlog.errors import RaftlogError
from tests.integration.conftest import client_access, describe_partition, wait_until
from tests.integration.test_data_plane import FAST_ISR, read_all

pytestmark = pytest.mark.slow


def leader_of(cluster, topic: str, partition: int = 0, node_ids=None) -> int:
    return describe_partition(cluster, topic, node_ids, partition)["leader"]


def test_acks_all_records_survive_repeated_leader_kills(make_cluster, secure):
    cluster = make_cluster(extra_config=FAST_ISR, secure=secure)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("ledger", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    access = client_access(cluster, "ledger")
    acked: dict[int, bytes] = {}
    failed = 0
    stop = threading.Event()

    def produce() -> None:
        nonlocal failed
        producer = Producer(
            cluster.bootstrap_servers,
            acks="all",
            linger_ms=1,
            delivery_timeout_ms=20_000,
            retry_backoff_ms=50,
            **access,
        )
        i = 0
        try:
            while not stop.is_set():
                futures = [(b"r%d" % (i + j), producer.send("ledger", b"r%d" % (i + j))) for j in range(20)]
                i += 20
                for value, future in futures:
                    try:
                        acked[future.result(30).offset] = value
                    except RaftlogError:
                        failed += 1
        finally:
            producer.close()

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        for _ in range(3):
            time.sleep(1.5)
            victim = leader_of(cluster, "ledger")
            cluster.kill_node(victim)
            wait_until(
                lambda: (
                    leader_of(cluster, "ledger", node_ids=[i for i in cluster.specs if i != victim]) not in (victim, -1)
                ),
                20,
                "a new partition leader",
            )
            time.sleep(1.0)
            cluster.start_node(victim)
            cluster.wait_for_rejoin(victim, timeout_s=30)
        time.sleep(1.0)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert len(acked) > 100
    seen = read_all(cluster.bootstrap_servers, "ledger", 1, len(acked), timeout_s=30, security=access)[0]
    offsets = [o for o, _ in seen]
    assert offsets == sorted(set(offsets)), "no offset twice, in order"
    values = [v for _, v in seen]
    assert len(values) == len(set(values)), "no record twice (idempotent retries)"
    stored = dict(seen)
    lost = {o: v for o, v in acked.items() if stored.get(o) != v}
    assert not lost, f"{len(lost)} acknowledged records lost or changed, e.g. {list(lost.items())[:3]}"
    # every replica holds the same records at the same offsets
    wait_until(lambda: _replica_logs_equal(cluster), 20, "replicas to converge")


def _replica_logs_equal(cluster) -> bool:
    from raftlog.log import PartitionLog
    from raftlog.log.record_batch import iter_batches

    contents = []
    for spec in cluster.specs.values():
        directory = spec.home / "data" / "ledger-0"
        log = PartitionLog(directory)  # read-only use: a second opener sees the flushed files
        records, offset = [], 0
        while offset < log.log_end_offset:
            data = log.read(offset, 1 << 22)
            if not data:
                break
            for header, batch in iter_batches(data):
                records += [(r.offset, r.value) for r in batch]
                offset = header.last_offset + 1
        contents.append(records)
    shortest = min(len(c) for c in contents)
    return shortest > 0 and all(c[:shortest] == contents[0][:shortest] for c in contents)


def test_a_paused_follower_leaves_the_isr_and_rejoins(make_cluster):
    cluster = make_cluster(extra_config=FAST_ISR)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("pause", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
        partition = admin.describe_topics(["pause"])[0]["partitions"][0]
    follower = next(r for r in partition["replicas"] if r != partition["leader"])
    others = [i for i in cluster.specs if i != follower]

    def isr(node_ids=None):
        with cluster.admin(node_ids or others, timeout_ms=3000) as admin:
            return admin.describe_topics(["pause"])[0]["partitions"][0]["isr"]

    producer = Producer(cluster.specs[partition["leader"]].address, acks="all")
    try:
        cluster.signal_node(follower, signal.SIGSTOP)
        producer.send("pause", b"during-pause").result(20)  # acks=all still works with 2 of 3
        wait_until(lambda: follower not in isr(), 20, "the paused follower to leave the ISR")
        cluster.signal_node(follower, signal.SIGCONT)
        producer.send("pause", b"after-pause").result(20)
        wait_until(lambda: follower in isr(), 30, "the follower to rejoin the ISR")
    finally:
        cluster.signal_node(follower, signal.SIGCONT)
        producer.close()


def test_a_follower_that_missed_many_megabytes_catches_up_and_rejoins(make_cluster):
    """Its first fetches return the most the leader will send at once (16 MiB), far more than
    gRPC's default 4 MiB message limit: the replica channels must take them."""
    cluster = make_cluster(extra_config=FAST_ISR)
    cluster.start()
    cluster.wait_for_brokers(3)
    with cluster.admin() as admin:
        admin.create_topic("backlog", partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})
    leader = wait_until(lambda: leader_of(cluster, "backlog") > 0 and leader_of(cluster, "backlog"), 20, "a leader")
    follower = next(n for n in cluster.specs if n != leader)
    cluster.kill_node(follower)
    others = [n for n in cluster.specs if n != follower]
    wait_until(lambda: follower not in describe_partition(cluster, "backlog", others)["isr"], 20, "the ISR to shrink")
    with Producer(
        ",".join(cluster.specs[n].address for n in others), acks="all", batch_size=1 << 20, linger_ms=5
    ) as producer:
        for i in range(12_000):  # ~12 MiB
            producer.send("backlog", b"%06d" % i + b"x" * 1018)
        producer.flush(60)
    cluster.start_node(follower)
    wait_until(
        lambda: sorted(describe_partition(cluster, "backlog")["isr"]) == [1, 2, 3],
        60,
        "the restarted follower to catch up and rejoin the ISR",
    )
