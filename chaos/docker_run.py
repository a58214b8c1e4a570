"""The chaos run on containers (`python -m chaos --backend docker`): the same faults, workload,
live reader, consumer group and checker as the namespace backend (chaos/nemesis.py), against three containers of
the raftlog image on a Docker network (chaos/containers.py), clients on the host.

What a fault does to a container: a kill is `docker kill` (then `docker start`), a pause is
`docker pause` (the cgroup freezer, as SIGSTOP), a clean restart is `docker stop`/`start`,
isolating a node disconnects its container from the network (clients lose it too, since they
reach it through a port published on that network), and a partition between nodes is iptables
DROP rules inside the container's network namespace (nsenter), so clients still reach it. A byte
flip edits the stopped node's data volume from the host; a clock skew recreates the leader's
container with libfaketime preloaded (the base image has Debian's faketime). Only here: a
bandwidth limit (tc tbf in the leader's network namespace) and a rolling restart (each node in
turn, full ISR between steps). Not on containers: a full disk (the namespace backend's tmpfs per
node).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from chaos.containers import IMAGE, INTERNAL_PORT, ContainerCluster, docker_client_or_reason, ensure_image
from chaos.nemesis import (
    CLOCK_SKEW,
    CLUSTER_CONFIG,
    FAKETIME_LIBRARY_GLOBS,
    RECOVERY_TIMEOUT_S,
    SKEW_HOLD_MIN_S,
    TOPIC,
    ChaosRun,
)
from raftlog.config import SCHEMA
from raftlog.errors import RaftlogError

DOCKER_FAULT_KINDS = (
    "isolate_leader",
    "partition_controller",
    "pause_leader",
    "kill_leader",
    "restart_node",
    "flip_byte",
    "election_storm",
    "skew_clock",
    "limit_bandwidth",
    "rolling_restart",
)
# The partition leader's sending rate under limit_bandwidth: well below what it sends under the
# workload (its acknowledged records to two followers and the consumers), so the fault shows.
BANDWIDTH_LIMIT_KBIT = 256
# CLOCK_SKEW is 8 days: a node whose clock is more than 7 days ahead runs under it.
SKEW_AHEAD_MIN_S = 7 * 24 * 3600


class BackendUnavailable(RuntimeError):
    """The docker backend cannot run here; the message says why."""


@dataclass
class DockerChaosRun(ChaosRun):
    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        client, reason = docker_client_or_reason()
        if client is None:
            raise BackendUnavailable(reason)
        ensure_image(client)
        extra_env = {SCHEMA[name].env_name: str(value) for name, value in CLUSTER_CONFIG.items()}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cluster = ContainerCluster(
            client, nodes=3, extra_env=extra_env, secure_dir=self.data_dir if self.secure else None
        )
        self.network = self.cluster  # isolate / partition / heal act on the containers' network
        self.mounts = {}

    def _start_nodes(self) -> None:
        self.cluster.start()

    def close(self) -> None:
        """Stops the clients, keeps each node's log in data_dir/node-<id>.log and removes every
        container, the network and the volumes of the run, whatever state it is in."""
        try:
            if self.reader:
                self.reader.stop()
            if self.group:
                self.group.stop()
            if self.workload:
                self.workload.abort()
        finally:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            for n in self.cluster.node_ids:
                (self.data_dir / f"node-{n}.log").write_text(self.cluster.logs(n, tail=100_000))
            self.cluster.remove()

    def _wait_recovered(self) -> None:
        """Every node's own view of the topic agrees before the namespace backend's check (which
        asks any one node). A container plugged back into its network answers at once, with the
        view it had when it was cut off (its old leaderships, a full ISR, its old high watermark),
        until Raft has caught it up: recovery judged from that view was declared in 0.2 s, and a
        read-back from it missed everything written since (481 "lost" records in the first run)."""
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        views: object = None
        while time.monotonic() < deadline:
            try:
                views = {}
                for n in self.cluster.node_ids:
                    with self.cluster.admin([n], timeout_ms=5000) as admin:
                        views[n] = admin.describe_topics([TOPIC])[0]["partitions"]
                if all(view == views[self.cluster.node_ids[0]] for view in views.values()):
                    break
            except RaftlogError as exc:
                views = exc
            time.sleep(0.1)
        else:
            raise TimeoutError(f"the nodes' views of {TOPIC} did not agree within {RECOVERY_TIMEOUT_S}s: {views}")
        super()._wait_recovered()

    def _listener_addresses(self) -> list[tuple[int, str, str]]:
        """The EXTERNAL listener as published on loopback, the INTERNAL one at the container's
        address on the run's network (which the host reaches)."""
        return [
            (n, listener, address)
            for n in self.cluster.node_ids
            for listener, address in (
                ("client", f"127.0.0.1:{self.cluster.ports[n].grpc}"),
                ("internal", f"{self.cluster.ip_address(n)}:{INTERNAL_PORT}"),
            )
        ]

    def limit_bandwidth(self, draw: int = 0) -> None:
        """Everything partition 0's leader sends (replication to its followers, responses to
        clients) is throttled to BANDWIDTH_LIMIT_KBIT for a while."""
        victim = self._leader()
        effect: dict[str, int] = {}

        def undo() -> None:
            effect.update(self.cluster.bandwidth_stats(victim))
            self.cluster.unlimit_bandwidth()

        self._hold(
            f"bandwidth {BANDWIDTH_LIMIT_KBIT} kbit/s",
            victim,
            lambda: self.cluster.limit_bandwidth(victim, BANDWIDTH_LIMIT_KBIT),
            undo,
            effect=effect,
        )

    def rolling_restart(self, draw: int = 0) -> None:
        """A rolling restart, as in an upgrade: each node in turn stopped cleanly (docker stop)
        and started, the next one only once every partition has its full ISR again."""
        effect = {"restarts": 0}

        def roll() -> None:
            for node_id in self.cluster.node_ids:
                self.log(f"  rolling restart: node {node_id}")
                self.cluster.stop_node(node_id)
                self.cluster.start_node(node_id)
                self._wait_recovered()
                effect["restarts"] += 1

        # The whole roll is the fault's window (inject); nothing is held after it.
        self._hold("rolling restart", 0, roll, lambda: None, hold_s=0.0, effect=effect)

    def skew_clock(self, draw: int = 0) -> None:
        """The leader of partition 0's container is recreated (on its volumes) with its clock
        CLOCK_SKEW ahead (libfaketime from the base image, preloaded through its environment),
        then after the hold recreated on the true time: as the namespace backend's skew_clock."""
        victim = self._leader()
        effect: dict[str, int] = {}

        def recreate(env: dict[str, str]) -> None:
            self.cluster.stop_node(victim)
            self.cluster.node_env[victim] = env
            self.cluster.recreate(victim)

        def inject() -> None:
            library = self._in_container(
                victim, "sh", "-c", f"ls {' '.join(FAKETIME_LIBRARY_GLOBS)} 2>/dev/null || true"
            )
            if not library:
                raise RuntimeError(f"no libfaketime in {IMAGE} ({', '.join(FAKETIME_LIBRARY_GLOBS)})")
            recreate({"LD_PRELOAD": library.split()[0], "FAKETIME": CLOCK_SKEW})
            ahead_s = (
                float(self._in_container(victim, "python3", "-c", "import time; print(time.time())")) - time.time()
            )
            effect["skewed"] = int(ahead_s > SKEW_AHEAD_MIN_S)
            try:
                self._wait_recovered()  # in sync again, and leading what it led
            except TimeoutError as exc:
                self.log(f"  node {victim} did not recover under the skew: {exc}")

        self._hold(
            f"clock {CLOCK_SKEW}",
            victim,
            inject,
            lambda: recreate({}),
            hold_s=max(self.hold_s, SKEW_HOLD_MIN_S),
            effect=effect,
        )

    def _in_container(self, node_id: int, *command: str) -> str:
        """Runs a command in the node's container (with its environment); its output."""
        exit_code, output = self.cluster.docker_container(node_id).exec_run(list(command))
        if exit_code != 0:
            raise RuntimeError(f"node {node_id}: {' '.join(command)} exited {exit_code}: {output.decode().strip()}")
        return output.decode().strip()

    def fill_disk(self, draw: int = 0) -> None:
        raise NotImplementedError("fill_disk needs a tmpfs log dir per node: namespace backend only")
