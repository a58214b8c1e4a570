"""`raftlog perf quorum`: throughput, commit latency and failover time of the metadata quorum.

It starts its own local cluster (it must kill -9 the leader to time failover): three combined
nodes, or `controllers` dedicated controllers and `brokers` broker-only nodes (the shape decides
what a failover costs: dedicated controllers do nothing but Raft and the controller):
1. pipelined writes: no-op records proposed on the active controller with many in flight,
   so the figure is the quorum's (Raft, transport, fsync), not the client's RPC stack;
2. single writes: the same with one in flight (commit latency as the leader sees it), and
   AlterConfigs round trips from this process (what a client sees);
3. AlterConfigs with many in flight, sent to the active controller from worker processes
   (ops/s, p50/p99, server CPU per operation, and how long broker heartbeats wait meanwhile;
   raftlog.perf.metadata_ops_bench), and the same one at a time;
4. failover: kill -9 the leader, time until another node has been elected and commits a
   write; then restart the killed node and wait until all brokers are back.
"""

from __future__ import annotations

import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from raftlog.client.admin import Admin
from raftlog.cluster.local import LocalCluster
from raftlog.errors import RaftlogError
from raftlog.node_ids import NO_NODE
from raftlog.perf.metadata_ops_bench import MetadataOpsResult, run_alter_configs
from raftlog.perf.stats import median, percentile
from raftlog.v1 import controller_pb2

FAILOVER_POLL_S = 0.01
FAILOVER_TIMEOUT_S = 30.0


@dataclass
class QuorumBenchResult:
    pipelined_writes: int = 0
    pipelined_elapsed_s: float = 0.0
    concurrency: int = 0
    commit_latencies_ms: list[float] = field(default_factory=list)
    client_latencies_ms: list[float] = field(default_factory=list)
    failover_s: list[float] = field(default_factory=list)
    alter_configs: MetadataOpsResult | None = None
    alter_configs_single: MetadataOpsResult | None = None
    shape: str = "3 combined nodes"

    def summary(self) -> dict:
        return {
            "cluster_shape": self.shape,
            "alter_configs_in_flight": self.alter_configs.summary() if self.alter_configs else None,
            "alter_configs_one_at_a_time": self.alter_configs_single.summary() if self.alter_configs_single else None,
            "pipelined_writes": self.pipelined_writes,
            "pipelined_writes_per_s": round(self.pipelined_writes / self.pipelined_elapsed_s, 1)
            if self.pipelined_elapsed_s
            else 0.0,
            "concurrency": self.concurrency,
            "commit_latency_ms": _latency_summary(self.commit_latencies_ms),
            "client_round_trip_ms": _latency_summary(self.client_latencies_ms),
            "failover_s": [round(s, 3) for s in self.failover_s],
            # None: not measured (against an existing cluster, which the bench does not kill)
            "failover_median_s": round(median(self.failover_s), 3) if self.failover_s else None,
        }


def _latency_summary(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values, default=0.0), 3),
    }


def run_quorum_bench(
    writes: int,
    concurrency: int,
    single_writes: int,
    failover_runs: int,
    base_port: int,
    data_dir: Path | None = None,
    progress=print,
    alter_ops: int = 0,
    in_flight: int = 256,
    controllers: int | None = None,
    brokers: int = 0,
) -> QuorumBenchResult:
    """controllers None: three combined nodes; else that many dedicated controllers and `brokers`
    broker-only nodes."""
    nodes = 3 if controllers is None else controllers + brokers
    shape = "3 combined nodes" if controllers is None else f"{controllers} controllers + {brokers} brokers"
    with tempfile.TemporaryDirectory(prefix="raftlog-perf-quorum-") as tmp:
        cluster = LocalCluster(
            data_dir or Path(tmp), nodes=nodes, base_port=base_port, metrics_base_port=0, controllers=controllers
        )
        try:
            cluster.start()
            cluster.wait_for_leader(timeout_s=60)
            cluster.wait_for_brokers(len(cluster.broker_ids), timeout_s=60)
            progress(f"cluster of {shape} up on {cluster.bootstrap_servers}")
            result = QuorumBenchResult(concurrency=concurrency, shape=shape)
            if alter_ops:
                _measure_alter_configs(cluster, result, alter_ops, in_flight, single_writes, progress)
            return _measure(cluster, result, writes, single_writes, failover_runs, progress)
        finally:
            cluster.stop()


def run_quorum_bench_against(
    bootstrap_servers: str, writes: int, concurrency: int, single_writes: int, progress=print
) -> QuorumBenchResult:
    """The write rows against an existing cluster (its active controller commits the no-ops);
    the failover row needs a cluster of its own to kill, and the AlterConfigs row the node
    processes' CPU, so neither is measured."""
    result = QuorumBenchResult(concurrency=concurrency)
    with Admin(bootstrap_servers, timeout_ms=600_000) as admin:
        _measure_writes(admin, result, writes, concurrency, single_writes, progress)
    return result


def _measure_writes(admin, result: QuorumBenchResult, writes, concurrency, single_writes, progress) -> None:
    admin.benchmark_quorum(min(writes, 2000), concurrency)  # warm-up
    response = admin.benchmark_quorum(writes, concurrency)
    result.pipelined_writes, result.pipelined_elapsed_s = response.committed, response.elapsed_s
    progress(f"pipelined: {response.committed} writes in {response.elapsed_s:.2f} s")
    result.commit_latencies_ms = list(admin.benchmark_quorum(single_writes, 1).latencies_ms)
    result.client_latencies_ms = _client_round_trips(admin, single_writes)
    progress("single writes measured")


def _measure_alter_configs(
    cluster: LocalCluster, result: QuorumBenchResult, ops: int, in_flight: int, single_ops: int, progress
) -> None:
    leader = cluster.wait_for_leader()
    address = cluster.specs[leader].address
    pids = [process.pid for process in cluster.processes.values()]
    heartbeat = _heartbeat_probe(cluster, leader)
    run_alter_configs(address, pids, heartbeat, min(ops, 2000), in_flight)  # warm-up
    result.alter_configs = run_alter_configs(address, pids, heartbeat, ops, in_flight)
    summary = result.alter_configs.summary()
    progress(f"AlterConfigs, {in_flight} in flight: {summary['ops_per_s']:.0f} ops/s")
    if single_ops:
        result.alter_configs_single = run_alter_configs(address, pids, heartbeat, single_ops, 1, client_processes=1)
        progress("AlterConfigs one at a time measured")


def _heartbeat_probe(cluster: LocalCluster, leader: int) -> controller_pb2.BrokerHeartbeatRequest:
    """A heartbeat of a registered, unfenced broker other than the leader, as that broker sends it."""
    with cluster.admin(timeout_ms=10_000) as admin:
        described = admin.describe_cluster()
    broker = next(b for b in described["brokers"] if b["id"] != leader and not b["fenced"])
    return controller_pb2.BrokerHeartbeatRequest(
        cluster_id=described["cluster_id"],
        broker_id=broker["id"],
        broker_epoch=broker["epoch"],
        metadata_offset=broker["epoch"],
    )


def _measure(cluster, result: QuorumBenchResult, writes, single_writes, failover_runs, progress) -> QuorumBenchResult:
    concurrency = result.concurrency
    with cluster.admin(timeout_ms=600_000) as admin:
        _measure_writes(admin, result, writes, concurrency, single_writes, progress)
    for run in range(failover_runs):
        result.failover_s.append(_one_failover(cluster))
        progress(f"failover run {run + 1}: {result.failover_s[-1]:.3f} s")
    return result


ROUND_TRIP_KEY = "log.retention.hours"


def _client_round_trips(admin, count: int) -> list[float]:
    """AlterConfigs round trips on the cluster-wide broker default of ROUND_TRIP_KEY, which is put
    back as it was afterwards (the cluster may be an operator's)."""
    before = next(
        (
            e
            for e in admin.describe_configs("brokers", "")
            if e["name"] == ROUND_TRIP_KEY and e["source"].startswith("DYNAMIC")
        ),
        None,
    )
    latencies_ms = []
    try:
        for i in range(count):
            started = time.perf_counter()
            admin.alter_configs("brokers", "", {ROUND_TRIP_KEY: str(100 + i % 50)})
            latencies_ms.append((time.perf_counter() - started) * 1000.0)
    finally:
        if before is not None:
            admin.alter_configs("brokers", "", {ROUND_TRIP_KEY: before["value"]})
        elif latencies_ms:
            admin.alter_configs("brokers", "", {}, [ROUND_TRIP_KEY])
    return latencies_ms


def _one_failover(cluster: LocalCluster) -> float:
    old_leader = cluster.wait_for_leader()
    cluster.remember_epochs()
    survivors = [i for i in cluster.specs if i != old_leader]
    cluster.signal_node(old_leader, signal.SIGKILL)
    killed_at = time.perf_counter()
    cluster.processes[old_leader].wait(timeout=10)
    elapsed_s = _time_until_commit(cluster, survivors, old_leader, killed_at)
    cluster.start_node(old_leader)
    cluster.wait_for_rejoin(old_leader, timeout_s=60)
    return elapsed_s


def _time_until_commit(cluster: LocalCluster, survivors: list[int], old_leader: int, killed_at: float) -> float:
    """Seconds from the kill until a new leader has committed a write."""
    deadline = killed_at + FAILOVER_TIMEOUT_S
    with cluster.admin(survivors, timeout_ms=500) as admin:
        while time.perf_counter() < deadline:
            try:
                if admin.describe_quorum()["leader_id"] not in (NO_NODE, old_leader):
                    admin.alter_configs("brokers", "", {"log.retention.hours": "168"})
                    return time.perf_counter() - killed_at
            except RaftlogError:
                pass
            time.sleep(FAILOVER_POLL_S)
    raise TimeoutError(f"no new leader committed within {FAILOVER_TIMEOUT_S}s after kill -9")
