"""`raftlog perf reassign`: the time to move one partition of `size_mib` to another broker, without
and with a replication throttle.

It starts its own local three-node cluster, fills a one-partition topic of replication factor 1
(acks=1, large batches), then reassigns the partition to the next broker with no throttle and
times it from AlterPartitionReassignments until the metadata shows the move complete (the new
replica caught up and in the ISR, the old one dropped), then moves it on to the third broker with
the throttle set the way `partitions reassign --execute --throttle` sets it (the rate on every
broker of the move, the partition's leader and follower throttled replicas) and times that, then
clears the throttle. The load average is reported with the figures: they are noisy on a busy host.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from raftlog.client.producer import Producer
from raftlog.client.reassignment_plan import throttled_replicas
from raftlog.cluster.local import LocalCluster

TOPIC = "perf-reassign"
VALUE_BYTES = 16 * 1024
MOVE_TIMEOUT_S = 3600.0
LEADER_RATE = "leader.replication.throttled.rate"
FOLLOWER_RATE = "follower.replication.throttled.rate"
LEADER_REPLICAS = "leader.replication.throttled.replicas"
FOLLOWER_REPLICAS = "follower.replication.throttled.replicas"


@dataclass
class Move:
    source: int
    target: int
    throttle_bytes_per_s: int | None
    seconds: float
    size_bytes: int

    def summary(self) -> dict:
        return {
            "from": self.source,
            "to": self.target,
            "throttle_bytes_per_s": self.throttle_bytes_per_s,
            "seconds": round(self.seconds, 2),
            "mib_per_s": round(self.size_bytes / (1 << 20) / max(self.seconds, 1e-9), 1),
        }


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_reassign_bench(size_mib: int, throttle_bytes_per_s: int, base_port: int, progress=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="raftlog-perf-reassign-") as tmp:
        cluster = LocalCluster(Path(tmp), nodes=3, base_port=base_port, metrics_base_port=0)
        try:
            cluster.start()
            cluster.wait_for_brokers(3, timeout_s=60)
            with cluster.admin(timeout_ms=30_000) as admin:
                admin.create_topic(TOPIC, partitions=1, replication_factor=1)
            load_before = _load_average()
            fill_s = _fill(cluster.bootstrap_servers, size_mib)
            size_bytes = _partition_bytes(cluster)
            progress(f"filled {TOPIC}-0 with {size_bytes / (1 << 20):.0f} MiB in {fill_s:.1f} s")
            moves = []
            for throttle in (None, throttle_bytes_per_s):
                moves.append(_move(cluster, throttle, size_bytes))
                progress(f"moved {moves[-1].summary()}")
            return {
                "size_bytes": size_bytes,
                "fill_seconds": round(fill_s, 2),
                "moves": [m.summary() for m in moves],
                "load_average_before": load_before,
                "load_average_after": _load_average(),
            }
        finally:
            cluster.stop()


def _fill(bootstrap: str, size_mib: int) -> float:
    producer = Producer(bootstrap, acks=1, linger_ms=20, batch_size=1 << 20)
    started = time.perf_counter()
    value = os.urandom(VALUE_BYTES)  # incompressible, though nothing compresses here
    try:
        for _ in range(size_mib * (1 << 20) // VALUE_BYTES):
            producer.send(TOPIC, value, partition=0)
        producer.flush(600)
    finally:
        producer.close(60)
    return time.perf_counter() - started


def _partition(admin) -> dict:
    return admin.describe_topics([TOPIC])[0]["partitions"][0]


def _partition_bytes(cluster: LocalCluster) -> int:
    with cluster.admin(timeout_ms=10_000) as admin:
        [replica] = _partition(admin)["replicas"]
    directory = cluster.specs[replica].home / "data" / f"{TOPIC}-0"
    return sum(f.stat().st_size for f in directory.glob("*.log"))


def _move(cluster: LocalCluster, throttle: int | None, size_bytes: int) -> Move:
    with cluster.admin(timeout_ms=30_000) as admin:
        [source] = _partition(admin)["replicas"]
        target = next(b for b in sorted(cluster.specs) if b > source) if source < max(cluster.specs) else 1
        key = (TOPIC, 0)
        if throttle is not None:
            leader, follower = throttled_replicas({key: [source]}, {key: [target]})[TOPIC]
            admin.alter_configs("topics", TOPIC, set_configs={LEADER_REPLICAS: leader, FOLLOWER_REPLICAS: follower})
            for broker in (source, target):
                admin.alter_configs(
                    "brokers", str(broker), set_configs={LEADER_RATE: str(throttle), FOLLOWER_RATE: str(throttle)}
                )
        started = time.perf_counter()
        admin.alter_partition_reassignments({key: [target]})
        deadline = time.monotonic() + MOVE_TIMEOUT_S
        while True:
            p = _partition(admin)
            if p["replicas"] == [target] and not p["adding_replicas"] and not p["removing_replicas"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the move to broker {target} did not complete in {MOVE_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        if throttle is not None:
            admin.alter_configs("topics", TOPIC, delete_configs=[LEADER_REPLICAS, FOLLOWER_REPLICAS])
            for broker in (source, target):
                admin.alter_configs("brokers", str(broker), delete_configs=[LEADER_RATE, FOLLOWER_RATE])
    return Move(source, target, throttle, seconds, size_bytes)
