"""Faults and the run that applies them to a three-node cluster under the workload.

A `ChaosRun` starts the nodes inside a ChaosNetwork (each node's log dir on a small tmpfs of
its own, see chaos/disk.py), creates the topic, starts the workload, then applies the planned
faults (chaos/schedule.py) one after another. Each fault hits the node that matters most at
that moment (the leader of partition 0, a follower of it, or the active controller), holds
for a while, is undone, and the run waits until the cluster has recovered (every partition
led, full ISR, the workload acknowledging again) before the next one. `finish` stops the
workload, reads the topic back, gives the consumer group (which consumes and commits
throughout) GROUP_CATCH_UP_S to process every acknowledged record, stops the nodes and
compares their files: the checker's verdict, which is given whatever happened before (a
recovery that timed out, a node that never came back): what kept the run from checking
something is one of its problems.

A secure run (`secure=True`, `python -m chaos --secure`) starts the nodes as `raftlog cluster up
--secure` does (raftlog/cluster/secure.py: TLS on every listener, mutual TLS with node
certificates on the internal one that carries Raft, controller and replica traffic, ACLs on with
only User:admin a super user; each node's certificate names its test-network address too). The
faults' admin calls go as User:admin; the workload, the live reader, the group and the read-back
as WORKLOAD_USER, by a client certificate, with only the ACLs they need. Before the workload
starts, the run checks that the security is real (`security_checks`): a plaintext client is
refused on each node's client and internal listener, and the workload's user on a topic it has
no ACL for; a request that is let through is one of the run's problems.
"""

from __future__ import annotations

import shutil
import signal
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.checker import Verdict, check, check_group, divergent_offsets
from chaos.disk import FILLER_NAME, DiskFaultError, TmpfsMount, damaged_batches, flip_byte, sealed_segments
from chaos.fault_record import FaultRecord
from chaos.network import ChaosNetwork
from chaos.report import write_report
from chaos.schedule import PlannedFault
from chaos.workload import FLUSH_TIMEOUT_S, GroupReaders, LiveReader, Workload, read_topic, stored_records
from raftlog.client.admin import Admin
from raftlog.client.consumer import Consumer, TopicPartition
from raftlog.client.producer import Producer
from raftlog.cluster.local import LocalCluster
from raftlog.cluster.secure import CLIENT_PORT_OFFSET
from raftlog.errors import RaftlogError
from raftlog.node_ids import NO_NODE

TOPIC = "chaos"
PARTITIONS = 3
BASE_PORT = 19500
RECOVERY_TIMEOUT_S = 60.0
STOPPED_EARLY_FLUSH_TIMEOUT_S = 30.0
GROUP_ID = "chaos-group"
GROUP_MEMBERS = 2
# After the last fault the group gets this long to process every acknowledged record.
GROUP_CATCH_UP_S = 60.0
STOPPED_EARLY_GROUP_CATCH_UP_S = 5.0
# Quick ISR changes, so that faults show within the hold times below.
CLUSTER_CONFIG = {"replica.lag.time.max.ms": 1500}
# Small segments, so that a run of a minute has sealed segments (for the byte flip, and for
# retention to act on under a skewed clock).
SEGMENT_BYTES = 32 * 1024
TOPIC_CONFIG = {"min.insync.replicas": "2", "segment.bytes": str(SEGMENT_BYTES)}
# Each node's log dir is a tmpfs of this size: room for a long campaign's data (a few MB a
# minute), small enough that filling it costs little memory.
LOG_DIR_MOUNT_BYTES = 128 * 1024 * 1024
CLOCK_SKEW = "+8d"  # beyond the default retention.ms (7 days)
FAKETIME_LIBRARY_GLOBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1")
# The broker applies retention every 5 s (MAINTENANCE_INTERVAL_S): a skew must last longer.
SKEW_HOLD_MIN_S = 6.0
# How many times skew_clock on the controller pauses the active controller to get the skewed
# node elected (each pause elects one of the other two: 1 in 2 chances).
CONTROLLER_MOVES_MAX = 6
# An election storm runs at least this many rounds (each moves every partition's leader), and
# stops after STORM_MAX_S whatever it reached.
STORM_MIN_ROUNDS = 8
STORM_MAX_S = 60.0
# A secure run's workload user (a client certificate: authenticated in every TLS handshake, so a
# reconnect to a restarted node needs no login) and a topic it has no ACL for.
WORKLOAD_USER = "chaos-workload"
FORBIDDEN_TOPIC = "chaos-no-acl"
SECURITY_CHECK_TIMEOUT_MS = 5000


def faketime_library() -> str:
    """Path of libfaketime (`make netns-tools` installs it)."""
    for pattern in FAKETIME_LIBRARY_GLOBS:
        found = sorted(Path("/").glob(pattern.lstrip("/")))
        if found:
            return str(found[0])
    raise FileNotFoundError(
        f"libfaketime not found ({', '.join(FAKETIME_LIBRARY_GLOBS)}): "
        "run `make netns-tools` (apt-get install faketime)"
    )


@dataclass
class ChaosRun:
    data_dir: Path
    hold_s: float = 5.0
    log: Callable[[str], None] = print
    secure: bool = False
    network: ChaosNetwork = field(init=False)
    cluster: LocalCluster = field(init=False)
    mounts: dict[int, TmpfsMount] = field(init=False)
    skewed: set[int] = field(init=False, default_factory=set)  # nodes started under CLOCK_SKEW
    workload: Workload | None = field(init=False, default=None)
    reader: LiveReader | None = field(init=False, default=None)
    group: GroupReaders | None = field(init=False, default=None)
    faults: list[FaultRecord] = field(init=False, default_factory=list)
    problems: list[str] = field(init=False, default_factory=list)
    started_at: float = field(init=False, default_factory=time.monotonic)  # time 0 of the report's timeline
    # The workload's client settings (a secure run: WORKLOAD_USER's certificate; else none).
    security: dict[str, str | None] = field(init=False, default_factory=dict)
    # A secure run: what was tried that must be refused -> the error it got ("allowed" if it was not).
    security_checks: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        node_ids = (1, 2, 3)
        self.network = ChaosNetwork(node_ids)
        self.mounts = {
            i: TmpfsMount(f"{self.network.prefix}-logs{i}", self.data_dir / f"node-{i}" / "logs", LOG_DIR_MOUNT_BYTES)
            for i in node_ids
        }
        self.cluster = LocalCluster(
            self.data_dir,
            nodes=3,
            base_port=BASE_PORT,
            metrics_base_port=0,
            extra_config=CLUSTER_CONFIG,
            hosts={i: self.network.address(i) for i in node_ids},
            launcher=self._launcher,
            log_dirs={i: mount.mount_point for i, mount in self.mounts.items()},
            secure=self.secure,
        )

    def _launcher(self, node_id: int) -> list[str]:
        prefix = self.network.launcher(node_id)
        if node_id in self.skewed:
            prefix += ["env", f"LD_PRELOAD={faketime_library()}", f"FAKETIME={CLOCK_SKEW}"]
        return prefix

    # -- setting up and tearing down -------------------------------------------------------------

    def _start_nodes(self) -> None:
        """Makes the test hosts and starts the nodes on them (the docker backend overrides it)."""
        self.network.create()
        for mount in self.mounts.values():
            mount.mount()
        self.cluster.start()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._start_nodes()
        self.cluster.wait_for_leader(timeout_s=60)
        self.cluster.wait_for_brokers(3, timeout_s=60)
        with self.cluster.admin(timeout_ms=30_000) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3, config=TOPIC_CONFIG)
        self._wait_recovered()
        if self.secure:
            self.security = self.cluster.add_client_user(WORKLOAD_USER, TOPIC, GROUP_ID, idempotent=True)
            self._check_security()
        bootstrap = self.cluster.bootstrap_servers
        self.workload = Workload(bootstrap, TOPIC, PARTITIONS, security=self.security)
        self.workload.start()
        self.reader = LiveReader(bootstrap, TOPIC, PARTITIONS, security=self.security)
        self.reader.start()
        self.group = GroupReaders(bootstrap, TOPIC, GROUP_ID, GROUP_MEMBERS, security=self.security)
        self.group.start()
        self.workload.wait_for_progress(100, RECOVERY_TIMEOUT_S)

    def _listener_addresses(self) -> list[tuple[int, str, str]]:
        """(node id, "client" or "internal", address) of each node's listeners, as the host reaches them."""
        return [
            (node_id, listener, f"{spec.host}:{port}")
            for node_id, spec in self.cluster.specs.items()
            for listener, port in (("client", spec.port + CLIENT_PORT_OFFSET), ("internal", spec.port))
        ]

    def _check_security(self) -> None:
        """Tries what a secure cluster must refuse; fills security_checks, and adds a problem for
        anything let through."""

        def refused(what: str, attempt: Callable[[], object]) -> None:
            try:
                attempt()
            except RaftlogError as exc:
                self.security_checks[what] = exc.reason
            else:
                self.security_checks[what] = "allowed"
                self.problems.append(f"secure run: {what} was allowed")

        for node_id, listener, address in self._listener_addresses():
            with Admin(address, timeout_ms=SECURITY_CHECK_TIMEOUT_MS) as plaintext:
                refused(f"plaintext client on node {node_id}'s {listener} listener", plaintext.describe_cluster)
        with self.cluster.admin(timeout_ms=30_000) as admin:
            admin.create_topic(FORBIDDEN_TOPIC, partitions=1, replication_factor=3)

        def produce() -> None:
            with Producer(self.cluster.bootstrap_servers, acks="all", **self.security) as producer:
                producer.send(FORBIDDEN_TOPIC, b"no ACL").result(SECURITY_CHECK_TIMEOUT_MS / 1000)

        def consume() -> None:
            with Consumer(self.cluster.bootstrap_servers, auto_offset_reset="earliest", **self.security) as consumer:
                consumer.assign([TopicPartition(FORBIDDEN_TOPIC, 0)])
                consumer.poll(timeout_ms=SECURITY_CHECK_TIMEOUT_MS)

        refused(f"User:{WORKLOAD_USER} producing to {FORBIDDEN_TOPIC}", produce)
        refused(f"User:{WORKLOAD_USER} consuming {FORBIDDEN_TOPIC}", consume)
        self.log(
            f"secure: workload as User:{WORKLOAD_USER} (client certificate); refused: "
            + "; ".join(f"{what}: {reason}" for what, reason in self.security_checks.items())
        )

    def run(self, faults: Iterable[PlannedFault]) -> Verdict:
        """Starts, applies the faults in order, and gives the verdict. Anything that stops the
        run early (a recovery that timed out, a node that would not start) becomes one of the
        verdict's problems; the verdict covers what was acknowledged until then."""
        try:
            self.start()
            for fault in faults:
                self.apply(fault)
        except Exception as exc:  # noqa: BLE001 - whatever stopped the faults, the verdict must follow
            self.log(traceback.format_exc().rstrip())
            self.problems.append(f"the run stopped early: {type(exc).__name__}: {exc}")
        return self.finish()

    def apply(self, fault: PlannedFault) -> None:
        getattr(self, fault.kind)(fault.draw)

    def close(self) -> None:
        """Stops the clients and every node (by pid), keeps a copy of the log dirs in
        node-<id>/logs.saved, unmounts them and removes the network, whatever state the run
        is in."""
        try:
            if self.reader:
                self.reader.stop()
            if self.group:
                self.group.stop()
            if self.workload:
                self.workload.abort()
            self.network.heal()
            self.cluster.stop()
        finally:
            failed: list[str] = []
            for mount in self.mounts.values():
                try:
                    if mount.mounted:
                        shutil.copytree(
                            mount.mount_point,
                            mount.mount_point.with_name("logs.saved"),
                            ignore=shutil.ignore_patterns(FILLER_NAME),
                            dirs_exist_ok=True,
                        )
                except OSError as exc:  # a copy for reading later: never worth a leaked mount
                    self.log(f"could not keep a copy of {mount.mount_point}: {exc}")
                try:
                    mount.unmount()
                except DiskFaultError as exc:  # the next mount and the network still go
                    failed.append(str(exc))
            self.network.destroy()
            if failed:
                raise DiskFaultError(f"could not unmount: {'; '.join(failed)}")

    # -- faults ----------------------------------------------------------------------------------

    def isolate_leader(self, draw: int = 0) -> None:
        """The leader of partition 0 loses the network (nodes and clients) for a while."""
        victim = self._leader()
        self._hold("isolate partition leader", victim, lambda: self.network.isolate(victim), self.network.heal)

    def partition_controller(self, draw: int = 0) -> None:
        """The active controller is cut off from the other nodes; clients still reach everyone."""
        victim = self.cluster.wait_for_leader()
        others = [n for n in self.cluster.specs if n != victim]
        self._hold("partition controller", victim, lambda: self.network.partition([victim], others), self.network.heal)

    def pause_leader(self, draw: int = 0) -> None:
        victim = self._leader()
        self._hold(
            "pause partition leader",
            victim,
            lambda: self.cluster.signal_node(victim, signal.SIGSTOP),
            lambda: self.cluster.signal_node(victim, signal.SIGCONT),
        )

    def kill_leader(self, draw: int = 0) -> None:
        victim = self._leader()
        self._hold(
            "kill -9 partition leader",
            victim,
            lambda: self.cluster.kill_node(victim),
            lambda: self.cluster.start_node(victim),
        )

    def restart_node(self, draw: int = 0) -> None:
        """A clean restart (SIGTERM: leadership is handed over first), as in a rolling upgrade."""
        nodes = sorted(self.cluster.specs)
        victim = nodes[draw % len(nodes)]
        self._hold(
            "restart",
            victim,
            lambda: self.cluster.stop_node(victim),
            lambda: self.cluster.start_node(victim),
            hold_s=0.5,
        )

    def fill_disk(self, draw: int = 0) -> None:
        """The log dir of partition 0's leader runs out of space (its tmpfs filled to the last
        byte) for a while; then the filler is deleted and the node restarted, as an operator
        would (like Kafka, a node takes a log that failed a write out of service until it
        restarts)."""
        victim = self._leader()
        mount = self.mounts[victim]
        effect: dict[str, int] = {}

        def inject() -> None:
            effect["filler_bytes"] = mount.fill()
            self.log(f"  filled {mount.mount_point} with {effect['filler_bytes']} bytes")

        def undo() -> None:
            mount.free()
            if not self.cluster.is_running(victim):
                self.log(
                    f"  node {victim} exited while its disk was full (code {self.cluster.processes[victim].returncode})"
                )
            self.cluster.stop_node(victim)
            self.cluster.start_node(victim)

        self._hold("fill log dir", victim, inject, undo, effect=effect)

    def flip_byte(self, draw: int = 0) -> None:
        """A follower of partition 0 is stopped, one byte of a record in a sealed segment of
        its partition 0 is inverted (as a bad disk would), and it is started again. Recovered
        once no batch in its files fails its CRC any more (the node found and repaired it)."""
        leader = self._leader()
        followers = [n for n in sorted(self.cluster.specs) if n != leader]
        victim = followers[draw % len(followers)]
        partition_dir = self.cluster.specs[victim].partitions_dir / f"{TOPIC}-0"
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not sealed_segments(partition_dir):  # SEGMENT_BYTES fill within seconds
            if time.monotonic() > deadline:
                raise TimeoutError(f"{partition_dir} had no sealed segment within {RECOVERY_TIMEOUT_S}s")
            time.sleep(0.2)

        effect: dict[str, int] = {}

        def inject() -> None:
            self.cluster.stop_node(victim)
            flipped = flip_byte(partition_dir, draw // len(followers))
            effect["flipped_batch_offset"] = flipped.batch_base_offset
            self.log(f"  flipped {flipped}")
            self.cluster.start_node(victim)

        def repaired() -> bool:
            return not damaged_batches(partition_dir)

        self._hold(
            "flip a byte in a sealed segment",
            victim,
            inject,
            lambda: None,
            hold_s=0.5,
            effect=effect,
            settled=(repaired, f"node {victim} repairing the damaged batch of {TOPIC}-0"),
        )

    @staticmethod
    def _runs_skewed(pid: int) -> bool:
        """Whether the process runs under the skew. The launcher (`ip netns exec ... env ...`)
        execs the node in steps, so right after the start the pid may not hold the final
        environment yet: look again, a bounded number of times."""
        wanted = f"FAKETIME={CLOCK_SKEW}".encode()
        for _ in range(100):
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False
            if wanted in environ and b"cli.main" in cmdline:
                return True
            time.sleep(0.05)
        return False

    def skew_clock(self, draw: int = 0) -> None:
        """A node is restarted with its clock CLOCK_SKEW ahead (libfaketime), given back its
        leaderships once in sync, and after the hold restarted on the true time. An even draw
        skews the leader of partition 0; an odd one the active controller, whose own restart hands
        the controller over: once the node is in sync, whichever node then leads the quorum is
        paused until another is elected, until the skewed node leads (a bounded number of
        times; effect["controller"] says whether it did). A controller must not take its own
        clock's word for it."""
        on_controller = draw % 2 == 1
        victim = self.cluster.wait_for_leader() if on_controller else self._leader()
        effect: dict[str, int] = {}

        def restart(skewed: bool) -> None:
            self.cluster.stop_node(victim)
            if skewed:
                self.skewed.add(victim)
            else:
                self.skewed.discard(victim)
            self.cluster.start_node(victim)

        def inject() -> None:
            restart(skewed=True)
            effect["skewed"] = int(self._runs_skewed(self.cluster.processes[victim].pid))
            try:
                self._wait_recovered()  # in sync again, and leading what it led
                if on_controller:
                    effect["controller"] = int(self._move_controller_to(victim))
            except TimeoutError as exc:
                self.log(f"  node {victim} did not recover under the skew: {exc}")

        self._hold(
            f"clock {CLOCK_SKEW}" + (" on the controller" if on_controller else ""),
            victim,
            inject,
            lambda: restart(skewed=False),
            hold_s=max(self.hold_s, SKEW_HOLD_MIN_S),
            effect=effect,
        )

    def _move_controller_to(self, target: int) -> bool:
        """Pauses the active controller until another node is elected, until `target` leads the
        quorum, at most CONTROLLER_MOVES_MAX times; whether it does."""
        for _ in range(CONTROLLER_MOVES_MAX):
            leader = self.cluster.wait_for_leader(RECOVERY_TIMEOUT_S)
            if leader == target:
                return True
            others = [n for n in self.cluster.specs if n != leader]
            self.cluster.signal_node(leader, signal.SIGSTOP)
            try:
                self.cluster.wait_for_leader(RECOVERY_TIMEOUT_S, node_ids=others, exclude=leader)
            finally:
                self.cluster.signal_node(leader, signal.SIGCONT)
        leader = self.cluster.wait_for_leader(RECOVERY_TIMEOUT_S)
        self.log(f"  node {leader} leads the quorum")
        return leader == target

    def election_storm(self, draw: int = 0) -> None:
        """Leaders of every partition move as fast as the active controller lets them: each
        round rotates every replica list (a reassignment that only reorders completes at once)
        and runs a preferred election. Undone by restoring the original replica order."""
        victim = self.cluster.wait_for_leader()
        original = {p["partition"]: list(p["replicas"]) for p in self._partitions()}
        tally = {"rounds": 0, "elected": 0, "refused": 0}

        def storm(hold_s: float) -> None:
            # Bound by work as well as by time: at least STORM_MIN_ROUNDS rounds however slow the
            # machine (a busy one managed 4 in 5 s), and never past STORM_MAX_S.
            started = time.monotonic()

            def going_on() -> bool:
                elapsed_s = time.monotonic() - started
                return elapsed_s < STORM_MAX_S and (elapsed_s < hold_s or tally["rounds"] < STORM_MIN_ROUNDS)

            with self.cluster.admin(timeout_ms=5000) as admin:
                while going_on():
                    tally["rounds"] += 1
                    shift = tally["rounds"] % len(self.cluster.specs)
                    for partition, replicas in original.items():
                        try:
                            admin.reassign_partition(TOPIC, partition, replicas[shift:] + replicas[:shift])
                        except RaftlogError:
                            tally["refused"] += 1
                    try:
                        results = admin.elect_leaders("preferred", [(TOPIC, p) for p in original])
                        tally["elected"] += sum(1 for r in results if not r["error"])
                        tally["refused"] += sum(1 for r in results if r["error"])
                    except RaftlogError:
                        tally["refused"] += 1
            self.log(
                f"  {tally['elected']} leader elections in {tally['rounds']} rounds over {hold_s:.1f} s "
                f"({tally['refused']} refused)"
            )

        def undo() -> None:
            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            pending = dict(original)
            with self.cluster.admin(timeout_ms=5000) as admin:
                while pending:
                    for partition, replicas in list(pending.items()):
                        try:
                            admin.reassign_partition(TOPIC, partition, replicas)
                            del pending[partition]
                        except RaftlogError as exc:
                            if time.monotonic() > deadline:
                                raise TimeoutError(
                                    f"could not restore the replica order of {TOPIC}-{partition}: {exc}"
                                ) from exc
                    time.sleep(0.1 if pending else 0)

        self._hold("leader election storm", victim, lambda: None, undo, during=storm, effect=tally)

    def _hold(
        self,
        name: str,
        victim: int,
        inject: Callable[[], None],
        undo: Callable[[], None],
        hold_s: float | None = None,
        during: Callable[[float], None] = time.sleep,
        effect: dict[str, int] | None = None,
        settled: tuple[Callable[[], bool], str] | None = None,
    ) -> None:
        """inject, hold (`during` gets the hold time: a sleep, or a fault that acts throughout),
        undo, wait for recovery; effect: what inject/during did, filled in by them; settled: a
        condition (and what it waits for) that recovery from this fault also needs."""
        held_s = self.hold_s if hold_s is None else hold_s
        self.log(f"{name}: node {victim} for {held_s:.1f} s")
        injected_at = time.monotonic()
        # Counted from before inject: some faults act in it (a rolling restart is all inject).
        acknowledged_before = self.workload.acknowledged()
        inject()
        try:
            during(held_s)
        finally:
            undo()
        undone_at = time.monotonic()
        acknowledged_while_held = self.workload.acknowledged() - acknowledged_before
        started = time.monotonic()
        try:
            if settled is not None:
                self._wait_until(*settled)
            self._wait_recovered()
            self.workload.wait_for_progress(50, RECOVERY_TIMEOUT_S)
        except TimeoutError:
            self.faults.append(
                FaultRecord(name, victim, held_s, None, acknowledged_while_held, effect or {}, injected_at, undone_at)
            )
            raise
        recovered_s = time.monotonic() - started
        self.faults.append(
            FaultRecord(
                name, victim, held_s, recovered_s, acknowledged_while_held, effect or {}, injected_at, undone_at
            )
        )
        self.log(
            f"  {acknowledged_while_held} acknowledged while it held; recovered in {recovered_s:.1f} s after; "
            f"{self.workload.acknowledged()} acknowledged so far"
        )

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

    def _wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not recover within {RECOVERY_TIMEOUT_S}s: {what}")
            time.sleep(0.2)

    def _wait_recovered(self) -> None:
        """Every node running, every partition led by a live node with all three replicas in
        sync, and led by its preferred replica again (so leaders stay spread and one fault never
        hits them all). The processes are checked too: right after a short fault the ISR may
        not have shrunk yet."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            stopped = [n for n in self.cluster.specs if not self.cluster.is_running(n)]
            if stopped:
                last = f"node(s) {stopped} not running"
                time.sleep(0.1)
                continue
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
        """Stops the workload, reads everything back, stops the nodes and compares their files.
        Always gives a verdict: a step that cannot complete adds a problem, and the checks use
        what could be had."""
        problems = list(self.problems)
        # After a run stopped early the cluster may not answer at all: wait less for the rest.
        flush_timeout_s = FLUSH_TIMEOUT_S if not problems else STOPPED_EARLY_FLUSH_TIMEOUT_S
        unacknowledged_at_end = self.workload.stop(flush_timeout_s) if self.workload else 0
        if self.reader:
            self.reader.stop()
        served: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(PARTITIONS)}
        if self.workload:
            try:
                self._wait_recovered()
            except TimeoutError as exc:
                problems.append(f"recovery wait before reading back timed out: {exc}")
            served, incomplete = read_topic(self.cluster.bootstrap_servers, TOPIC, PARTITIONS, security=self.security)
            if incomplete:
                problems.append(f"read-back incomplete: {incomplete}")
        acks = self.workload.acks if self.workload else []
        verdict = check(acks, served, self.reader.read if self.reader else [])
        verdict.unacknowledged_at_end = unacknowledged_at_end
        if self.group:
            # After a run stopped early the cluster may not answer: the count says what was missed.
            catch_up_s = GROUP_CATCH_UP_S if not problems else STOPPED_EARLY_GROUP_CATCH_UP_S
            if not self.group.wait_caught_up([ack.value for ack in acks], catch_up_s):
                self.log(f"the group did not process every acknowledged record within {catch_up_s}s")
            self.group.stop()
            check_group(verdict, acks, self.group.processed, self.group.commits)
        self.cluster.stop()
        replicas: dict[int, dict[int, list[tuple[int, bytes]]]] = {}
        for node_id, spec in self.cluster.specs.items():
            for partition in range(PARTITIONS):
                partition_dir = spec.partitions_dir / f"{TOPIC}-{partition}"
                if not partition_dir.is_dir():
                    continue

                def corrupt(offset: int, exc: Exception, where: str = f"node {node_id} {TOPIC}-{partition}") -> None:
                    self.log(f"{where}: batch at offset {offset} is damaged ({exc})")

                try:
                    replicas.setdefault(node_id, {})[partition] = stored_records(partition_dir, on_corrupt=corrupt)
                except (RaftlogError, OSError) as exc:
                    problems.append(f"node {node_id} {TOPIC}-{partition}: files unreadable: {exc}")
        verdict.divergent = divergent_offsets(replicas)
        verdict.problems = problems
        producer_failures = (self.workload.failures if self.workload else None) or "none"
        if self.workload and self.workload.first_failures:
            producer_failures = f"{producer_failures} (first of each: {self.workload.first_failures})"
        reader_errors = (self.reader.errors if self.reader else None) or "none"
        group_errors = (self.group.errors if self.group else None) or "none"
        self.log(
            f"verdict: {verdict.summary()}; producer failures: {producer_failures}; reader errors: {reader_errors}; "
            f"group errors: {group_errors}"
        )
        try:
            written = write_report(
                self.data_dir,
                verdict,
                self.faults,
                self.workload.latencies if self.workload else [],
                self.started_at,
                extra_lines=[
                    f"producer failures: {producer_failures}",
                    f"reader errors: {reader_errors}",
                    f"group errors: {group_errors}",
                ],
            )
            self.log(f"report: {', '.join(str(p) for p in written)}")
        except Exception as exc:  # noqa: BLE001 - a report that cannot be drawn must not hide the verdict
            self.log(f"could not write the report: {type(exc).__name__}: {exc}")
        return verdict
