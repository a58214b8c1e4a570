"""The chaos run on containers (`python -m chaos --backend docker`): the same faults, workload,
live reader, consumer group and checker as the namespace backend (chaos/nemesis.py), against three containers of
the raftlog image on a Docker network (chaos/containers.py), clients on the host.

What a fault does to a container: a kill is `docker kill` (then `docker start`), a pause is
`docker pause` (the cgroup freezer, as SIGSTOP), a clean restart is `docker stop`/`start`,
isolating a node disconnects its container from the network (clients lose it too, since they
reach it through a port published on that network), and a partition between nodes is iptables
DROP rules inside the container's network namespace (nsenter), so clients still reach it. A byte
flip edits the stopped node's data volume from the host. Not on containers: a full disk (the
namespace backend's tmpfs per node) and clock skew (libfaketime is not in the image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from chaos.containers import ContainerCluster, docker_client_or_reason, ensure_image
from chaos.nemesis import CLUSTER_CONFIG, RECOVERY_TIMEOUT_S, TOPIC, ChaosRun
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
)


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
        self.cluster = ContainerCluster(client, nodes=3, extra_env=extra_env)
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

    def fill_disk(self, draw: int = 0) -> None:
        raise NotImplementedError("fill_disk needs a tmpfs log dir per node: namespace backend only")

    def skew_clock(self, draw: int = 0) -> None:
        raise NotImplementedError("skew_clock needs libfaketime, which the image does not have: namespace backend only")
