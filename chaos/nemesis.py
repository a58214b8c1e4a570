"""Faults and the run that applies them to a three-node cluster under the workload.

A `ChaosRun` starts the nodes inside a ChaosNetwork, creates the topic, starts the workload,
then applies faults one after another. Each fault hits the node that matters most at that
moment (the leader of partition 0, or the active controller), holds for a while, is undone,
and the run waits until the cluster has recovered (every partition led, full ISR, the
workload acknowledging again) before the next one. `finish` stops the workload, reads the
topic back, stops the nodes and compares their files: the checker's verdict.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.checker import Verdict, check, divergent_offsets
from chaos.network import ChaosNetwork
from chaos.workload import LiveReader, Workload, read_topic, stored_records
from raftlog.cluster.local import LocalCluster
from raftlog.errors import RaftlogError
from raftlog.node_ids import NO_NODE

TOPIC = "chaos"
PARTITIONS = 3
BASE_PORT = 19500
RECOVERY_TIMEOUT_S = 60.0
# Quick ISR changes, so that faults show within the hold times below.
CLUSTER_CONFIG = {"replica.lag.time.max.ms": 1500}


@dataclass
class FaultRecord:
    name: str
    target: int
    held_s: float
    recovered_s: float
    acknowledged_while_held: int  # the workload's acknowledgements while the fault held


@dataclass
class ChaosRun:
    data_dir: Path
    hold_s: float = 5.0
    log: Callable[[str], None] = print
    network: ChaosNetwork = field(init=False)
    cluster: LocalCluster = field(init=False)
    workload: Workload | None = field(init=False, default=None)
    reader: LiveReader | None = field(init=False, default=None)
    faults: list[FaultRecord] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.network = ChaosNetwork([1, 2, 3])
        self.cluster = LocalCluster(self.data_dir, nodes=3, base_port=BASE_PORT, metrics_base_port=0,
                                    extra_config=CLUSTER_CONFIG,
                                    hosts={i: self.network.address(i) for i in (1, 2, 3)},
                                    launcher=self.network.launcher)

    # -- setting up and tearing down -------------------------------------------------------------

    def start(self) -> None:
        self.network.create()
        self.cluster.start()
        self.cluster.wait_for_leader(timeout_s=60)
        self.cluster.wait_for_brokers(3, timeout_s=60)
        with self.cluster.admin(timeout_ms=30_000) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"})
        self._wait_recovered()
        self.workload = Workload(self.cluster.bootstrap_servers, TOPIC, PARTITIONS)
        self.workload.start()
        self.reader = LiveReader(self.cluster.bootstrap_servers, TOPIC, PARTITIONS)
        self.reader.start()
        self.workload.wait_for_progress(100, RECOVERY_TIMEOUT_S)

    def close(self) -> None:
        """Stops the clients and every node (by pid) and removes the network, whatever state the
        run is in."""
        try:
            if self.reader:
                self.reader.stop()
            if self.workload:
                self.workload.abort()
            self.network.heal()
            self.cluster.stop()
        finally:
            self.network.destroy()

    # -- faults ----------------------------------------------------------------------------------

    def isolate_leader(self) -> None:
        """The leader of partition 0 loses the network (nodes and clients) for a while."""
        victim = self._leader()
        self._hold("isolate partition leader", victim, lambda: self.network.isolate(victim), self.network.heal)

    def partition_controller(self) -> None:
        """The active controller is cut off from the other nodes; clients still reach everyone."""
        victim = self.cluster.wait_for_leader()
        others = [n for n in self.cluster.specs if n != victim]
        self._hold("partition controller", victim, lambda: self.network.partition([victim], others),
                   self.network.heal)

    def pause_leader(self) -> None:
        victim = self._leader()
        self._hold("pause partition leader", victim, lambda: self.cluster.signal_node(victim, signal.SIGSTOP),
                   lambda: self.cluster.signal_node(victim, signal.SIGCONT))

    def kill_leader(self) -> None:
        victim = self._leader()
        self._hold("kill -9 partition leader", victim, lambda: self.cluster.kill_node(victim),
                   lambda: self.cluster.start_node(victim))

    def restart_node(self) -> None:
        """A clean restart (SIGTERM: leadership is handed over first), as in a rolling upgrade."""
        victim = random.choice(list(self.cluster.specs))
        self._hold("restart", victim, lambda: self.cluster.stop_node(victim),
                   lambda: self.cluster.start_node(victim), hold_s=0.5)

    FAULTS = ("isolate_leader", "partition_controller", "pause_leader", "kill_leader", "restart_node")

    def _hold(self, name: str, victim: int, inject: Callable[[], None], undo: Callable[[], None],
              hold_s: float | None = None) -> None:
        held_s = self.hold_s if hold_s is None else hold_s
        self.log(f"{name}: node {victim} for {held_s:.1f} s")
        inject()
        acknowledged_before = self.workload.acknowledged()
        try:
            time.sleep(held_s)
        finally:
            undo()
        acknowledged_while_held = self.workload.acknowledged() - acknowledged_before
        started = time.monotonic()
        self._wait_recovered()
        self.workload.wait_for_progress(50, RECOVERY_TIMEOUT_S)
        recovered_s = time.monotonic() - started
        self.faults.append(FaultRecord(name, victim, held_s, recovered_s, acknowledged_while_held))
        self.log(f"  {acknowledged_while_held} acknowledged while it held; recovered in {recovered_s:.1f} s after; "
                 f"{self.workload.acknowledged()} acknowledged so far")

    # -- observing -------------------------------------------------------------------------------

    def _partitions(self) -> list[dict]:
        with self.cluster.admin(timeout_ms=5000) as admin:
            return admin.describe_topics([TOPIC])[0]["partitions"]

    def _leader(self) -> int:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                leader = self._partitions()[0]["leader"]
                if leader != NO_NODE:
                    return leader
            except RaftlogError:
                pass
            time.sleep(0.1)
        raise TimeoutError("partition 0 has no leader")

    def _wait_recovered(self) -> None:
        """Every partition led by a live node with all three replicas in sync, and led by its
        preferred replica again (so leaders stay spread and one fault never hits them all)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            try:
                last = self._partitions()
                if all(p["leader"] != NO_NODE and len(p["isr"]) == 3 for p in last):
                    if all(p["leader"] == p["replicas"][0] for p in last):
                        return
                    with self.cluster.admin(timeout_ms=5000) as admin:
                        admin.elect_leaders("preferred", [(TOPIC, p["partition"]) for p in last])
            except RaftlogError as exc:
                last = exc
            time.sleep(0.1)
        raise TimeoutError(f"the cluster did not recover within {RECOVERY_TIMEOUT_S}s: {last}")

    # -- the verdict -----------------------------------------------------------------------------

    def finish(self) -> Verdict:
        """Stops the workload, reads everything back, stops the nodes and compares their files."""
        self.workload.stop()
        self.reader.stop()
        self._wait_recovered()
        served = read_topic(self.cluster.bootstrap_servers, TOPIC, PARTITIONS)
        verdict = check(self.workload.acks, served, self.reader.read)
        self.cluster.stop()
        replicas = {
            node_id: {p: stored_records(spec.home / "data" / f"{TOPIC}-{p}") for p in range(PARTITIONS)}
            for node_id, spec in self.cluster.specs.items()
        }
        verdict.divergent = divergent_offsets(replicas)
        self.log(f"verdict: {verdict.summary()}; producer failures: {self.workload.failures or 'none'}; "
                 f"reader errors: {self.reader.errors or 'none'}")
        return verdict
