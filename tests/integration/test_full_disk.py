"""One node's log dir on a small filesystem that fills up (issue 9 §2): the node stops leading
and leaves the ISR of every partition it cannot write, the others go on taking acks=all
writes, and after more space and a restart it recovers, catches up and serves every
acknowledged record again. Needs root (a tmpfs mount of a few MB, always unmounted)."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from tests.integration.conftest import free_port_block, wait_until

pytestmark = pytest.mark.slow
SMALL_DISK = "4m"
PARTITIONS = 3
FAST = {"replica.lag.time.max.ms": 1500, "broker.session.timeout.ms": 2500, "broker.heartbeat.interval.ms": 250}


class SmallDiskCluster(LocalCluster):
    """Node 1 keeps its partition logs in `small_dir` and its metadata on the normal disk."""

    small_dir: os.PathLike

    def _write_config(self, spec) -> None:
        super()._write_config(spec)
        if spec.node_id == 1:
            text = spec.config_path.read_text().replace(
                f'"log.dirs" = "{spec.home / "data"}"', f'"log.dirs" = "{self.small_dir}"'
            )
            spec.config_path.write_text(text + f'"metadata.log.dir" = "{spec.home / "data"}"\n')


def _partitions(cluster: LocalCluster, topic: str) -> list[dict]:
    with cluster.admin([2, 3], timeout_ms=3000) as admin:
        return admin.describe_topics([topic])[0]["partitions"]


def _read_all(bootstrap: str, topic: str, expected: set[bytes], timeout_s: float = 60) -> set[bytes]:
    seen: set[bytes] = set()
    with Consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout_s
        while not expected <= seen and time.monotonic() < deadline:
            seen |= {record.value for record in consumer.poll(timeout_ms=500)}
    return seen


def test_a_full_disk_takes_the_node_out_of_leadership_and_the_isr_until_it_is_repaired(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK}", "tmpfs", str(small)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    cluster = None
    try:
        cluster = SmallDiskCluster(
            tmp_path / "cluster", nodes=3, base_port=free_port_block(3), metrics_base_port=0, extra_config=FAST
        )
        cluster.small_dir = small
        cluster.start()
        cluster.wait_for_brokers(3)
        with cluster.admin() as admin:
            admin.create_topic(
                "fill",
                partitions=PARTITIONS,
                replication_factor=3,
                config={"min.insync.replicas": "2", "segment.bytes": "1048576"},
            )
        assert any(p["leader"] == 1 for p in _partitions(cluster, "fill"))

        # ~3x the small disk in acks=all records: node 1 fills up early on.
        acknowledged: set[bytes] = set()
        producer = Producer(cluster.bootstrap_servers, acks="all", linger_ms=5, delivery_timeout_ms=60_000)
        try:
            futures = {}
            for i in range(1200):
                value = b"%06d-" % i + os.urandom(5000)
                futures[value] = producer.send("fill", value, partition=i % PARTITIONS)
                if i % 100 == 99:
                    producer.flush()
            producer.flush()
            for value, future in futures.items():
                try:
                    future.result(60)
                    acknowledged.add(value)
                except Exception:  # noqa: BLE001 - a record may fail; only acknowledged ones must survive
                    pass
        finally:
            producer.close()
        assert len(acknowledged) > 1000, f"only {len(acknowledged)} of 1200 acknowledged"

        # Node 1 leads nothing and is in no ISR; the other two serve every acknowledged record.
        wait_until(
            lambda: all(p["leader"] in (2, 3) and 1 not in p["isr"] for p in _partitions(cluster, "fill")),
            30,
            "node 1 to give up leadership and leave every ISR",
        )
        seen = _read_all(",".join(cluster.specs[i].address for i in (2, 3)), "fill", acknowledged)
        assert acknowledged <= seen, f"{len(acknowledged - seen)} acknowledged records missing"
        time.sleep(3)  # longer than replica.lag.time.max.ms: it must not creep back while broken
        assert all(1 not in p["isr"] for p in _partitions(cluster, "fill"))

        # More space, a restart: recovery cuts what was torn, the replica catches up and rejoins.
        cluster.stop_node(1)
        subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True)
        cluster.start_node(1)
        wait_until(
            lambda: all(sorted(p["isr"]) == [1, 2, 3] for p in _partitions(cluster, "fill")),
            60,
            "node 1 to catch up and rejoin every ISR",
        )
        with cluster.admin() as admin:
            admin.elect_leaders("preferred")
        wait_until(lambda: any(p["leader"] == 1 for p in _partitions(cluster, "fill")), 30, "node 1 to lead again")
        seen = _read_all(cluster.bootstrap_servers, "fill", acknowledged)
        assert acknowledged <= seen, f"{len(acknowledged - seen)} acknowledged records missing after the repair"
    finally:
        if cluster is not None:
            cluster.stop()
        subprocess.run(["umount", "-l", str(small)], capture_output=True)
