"""`raftlog perf failover`: how long acks=all produce stalls when a partition leader is killed -9.

It starts its own local three-node cluster (it must kill nodes), creates a topic with
replication factor 3 and min.insync.replicas=2, and keeps one producer (acks=all,
idempotent) sending a record every `interval_ms` to one partition. Each run kills -9 that
partition's leader and measures, from the kill, until the first record *sent after the
kill* is acknowledged: the stall a producing application sees. Runs alternate between a
leader that is also the active controller (Raft must elect first) and one that is not.
After each run the victim restarts and every partition is back to a full ISR.

With `controllers` and `brokers` the cluster has dedicated controllers and broker-only nodes
(process.roles): runs alternate between a broker leading the partition and the active controller,
which leads no partition, so the second kind shows what a controller failover costs producers.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from raftlog.client.producer import Producer, RecordFuture
from raftlog.cluster.local import LocalCluster
from raftlog.errors import RaftlogError
from raftlog.perf.stats import median

TOPIC = "perf-failover"
PARTITIONS = 3
RECOVERY_TIMEOUT_S = 30.0
REJOIN_TIMEOUT_S = 60.0


@dataclass
class FailoverRun:
    victim: int
    was_controller: bool
    was_partition_leader: bool  # False only for a dedicated controller
    stall_s: float
    failed_records: int

    def role(self) -> str:
        if not self.was_partition_leader:
            return "the active controller, a dedicated one leading no partition"
        return "the partition leader, " + ("also" if self.was_controller else "not") + " the active controller"

    def summary(self) -> dict:
        return {
            "victim": self.victim,
            "was_controller": self.was_controller,
            "was_partition_leader": self.was_partition_leader,
            "role": self.role(),
            "stall_s": round(self.stall_s, 3),
            "failed_records": self.failed_records,
        }


@dataclass
class FailoverBenchResult:
    shape: str  # "3 combined nodes" or "C controllers + B brokers"
    runs: list[FailoverRun] = field(default_factory=list)

    def summary(self) -> dict:
        stalls = [run.stall_s for run in self.runs]
        controller_stalls = [run.stall_s for run in self.runs if run.was_controller]
        return {
            "shape": self.shape,
            "runs": [run.summary() for run in self.runs],
            "median_controller_kill_stall_s": round(median(controller_stalls), 3) if controller_stalls else None,
            "median_stall_s": round(median(stalls), 3),
            "max_stall_s": round(max(stalls, default=0.0), 3),
        }


class _SteadyProducer:
    """A thread sending one record every interval; remembers when each send was acknowledged."""

    def __init__(self, bootstrap: str, partition: int, interval_ms: int):
        self._producer = Producer(
            bootstrap, acks="all", linger_ms=0, retry_backoff_ms=50, delivery_timeout_ms=int(RECOVERY_TIMEOUT_S * 1000)
        )
        self._partition = partition
        self._interval_s = interval_ms / 1000.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sent: list[tuple[float, RecordFuture]] = []  # (send time, future)
        self._thread = threading.Thread(target=self._run, name="perf-failover-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            future = self._producer.send(TOPIC, b"failover-%d" % i, partition=self._partition)
            with self._lock:
                self._sent.append((time.perf_counter(), future))
            i += 1
            self._stop.wait(self._interval_s)

    def first_ack_after(self, moment: float, timeout_s: float) -> float:
        """perf_counter time at which the first record sent after `moment` was acknowledged."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            with self._lock:
                later = [future for sent_at, future in self._sent if sent_at > moment]
            if later:
                later[0].result(max(0.0, deadline - time.perf_counter()))
                return time.perf_counter()
            time.sleep(0.001)
        raise TimeoutError(f"nothing sent after the kill was acknowledged within {timeout_s}s")

    def stop(self) -> int:
        """Stops sending, waits for every record; returns how many failed."""
        self._stop.set()
        self._thread.join()
        self._producer.flush()
        failed = 0
        for _, future in self._sent:
            try:
                future.result(0)
            except RaftlogError:
                failed += 1
        self._producer.close()
        return failed


def run_failover_bench(
    runs: int, interval_ms: int, base_port: int, progress=print, controllers: int = 0, brokers: int = 0
) -> FailoverBenchResult:
    """controllers and brokers: dedicated controllers and broker-only nodes (both 0: three combined nodes)."""
    assert (controllers == 0) == (brokers == 0), "dedicated controllers and brokers go together"
    assert brokers == 0 or brokers >= 3, "replication factor 3 needs three brokers"
    nodes = controllers + brokers if controllers else 3
    with tempfile.TemporaryDirectory(prefix="raftlog-perf-failover-") as tmp:
        cluster = LocalCluster(
            Path(tmp), nodes=nodes, controllers=controllers or None, base_port=base_port, metrics_base_port=0
        )
        try:
            cluster.start()
            cluster.wait_for_leader(timeout_s=60)
            cluster.wait_for_brokers(brokers or 3, timeout_s=60)
            with cluster.admin(timeout_ms=30_000) as admin:
                admin.create_topic(
                    TOPIC, partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"}
                )
            _wait_for_full_isr(cluster)
            progress(f"cluster up on {cluster.bootstrap_servers}")
            shape = f"{controllers} controllers + {brokers} brokers" if controllers else "3 combined nodes"
            result = FailoverBenchResult(shape)
            for run in range(runs):
                result.runs.append(_one_run(cluster, kill_controller=run % 2 == 1, interval_ms=interval_ms))
                last = result.runs[-1]
                progress(
                    f"run {run + 1}: killed node {last.victim} ({last.role()}): produce stalled {last.stall_s:.3f} s"
                )
            return result
        finally:
            cluster.stop()


def _one_run(cluster: LocalCluster, kill_controller: bool, interval_ms: int) -> FailoverRun:
    controller = cluster.wait_for_leader()
    partition, victim = _pick_partition(cluster, controller, kill_controller)
    producer = _SteadyProducer(cluster.bootstrap_servers, partition, interval_ms)
    producer.start()
    try:
        producer.first_ack_after(time.perf_counter(), RECOVERY_TIMEOUT_S)  # warm: producer id, metadata
        time.sleep(0.5)
        cluster.remember_epochs()
        cluster.signal_node(victim, signal.SIGKILL)
        killed_at = time.perf_counter()
        stall_s = producer.first_ack_after(killed_at, RECOVERY_TIMEOUT_S) - killed_at
    finally:
        failed = producer.stop()
    cluster.processes[victim].wait(timeout=10)
    cluster.start_node(victim)
    cluster.wait_for_rejoin(victim, timeout_s=REJOIN_TIMEOUT_S)
    _wait_for_full_isr(cluster)
    return FailoverRun(victim, victim == controller, victim in cluster.broker_ids, stall_s, failed)


def _pick_partition(cluster: LocalCluster, controller: int, kill_controller: bool) -> tuple[int, int]:
    """(partition, its leader) whose leader is (or is not) the active controller."""
    with cluster.admin(timeout_ms=5000) as admin:
        partitions = admin.describe_topics([TOPIC])[0]["partitions"]
    if kill_controller and controller not in cluster.broker_ids:  # a dedicated controller leads no partition
        return partitions[0]["partition"], controller
    for row in partitions:
        if (row["leader"] == controller) == kill_controller and row["leader"] >= 0:
            return row["partition"], row["leader"]
    # Leaders all on one node (e.g. after restarts): any partition will do.
    return partitions[0]["partition"], partitions[0]["leader"]


def _wait_for_full_isr(cluster: LocalCluster) -> None:
    deadline = time.monotonic() + REJOIN_TIMEOUT_S
    with cluster.admin(timeout_ms=5000) as admin:
        while time.monotonic() < deadline:
            try:
                partitions = admin.describe_topics([TOPIC])[0]["partitions"]
                if all(len(p["isr"]) == 3 and p["leader"] >= 0 for p in partitions):
                    admin.elect_leaders("preferred", [(TOPIC, p["partition"]) for p in partitions])
                    return
            except RaftlogError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"partitions of {TOPIC} did not return to a full ISR within {REJOIN_TIMEOUT_S}s")
